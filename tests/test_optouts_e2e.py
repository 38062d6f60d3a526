"""Opt-outs mid-stream, on real processes: nobody is texted after their STOP was heard.

The drill (worker/drills/optouts.py) is the benchmark's, at a smaller scale:
SENDQ_E2E_OPTOUT_TEXTS sets the number of texts (the benchmark runs 5,000).
"""

from __future__ import annotations

import os
from pathlib import Path

from worker.drills import optouts

TEXTS = int(os.environ.get("SENDQ_E2E_OPTOUT_TEXTS", "1000"))


def test_no_one_is_texted_after_their_stop_was_heard_in_either_campaign(
    private_redis, tmp_path: Path
) -> None:
    url, _ = private_redis
    figures = optouts.run(url, tmp_path / "logs", texts=TEXTS, stop_share=0.10)
    assert figures.stopped > 0
    assert figures.violations == 0
    # The second campaign of the organisation never texts a person who stopped.
    assert figures.second_campaign_texts_to_stopped == 0
    assert figures.suppressed_at_enqueue == figures.stopped * 2
    # Later rounds of the first campaign were still queued when the STOPs came.
    assert figures.suppressed_at_send > 0
    assert figures.confirmations == figures.stopped
    assert (figures.lost, figures.doubled) == (0, 0)
