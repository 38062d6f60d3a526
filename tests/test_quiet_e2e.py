"""Quiet hours on real processes: a backlog held until the window opens, then paced.

The drill (worker/drills/quiet.py) is the benchmark's at a smaller scale.
"""

from __future__ import annotations

from pathlib import Path

from worker.drills import quiet


def test_no_text_arrives_in_quiet_hours_and_the_opening_keeps_the_rate_limit(
    private_redis, tmp_path: Path
) -> None:
    url, _ = private_redis
    figures = quiet.run(url, tmp_path / "logs", texts=200, rate=50, burst=2)
    assert figures.held_peak == 200  # every text waited for the window
    assert figures.delivered == 200
    assert figures.delivered_in_quiet_hours == 0
    assert figures.first_after_opening_s >= 0
    assert figures.busiest_1s <= figures.limit_1s
    assert (figures.lost, figures.doubled) == (0, 0)
