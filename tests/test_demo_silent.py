"""``sendq demo --story silent``: Verizon says delivered while its people stop replying."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker import demo_silent


@pytest.mark.slow  # the demo's own Redis, simulator, webhook app and workers
def test_the_silent_story_pauses_the_silent_carrier_with_its_evidence(tmp_path: Path) -> None:
    result = demo_silent.run(count=5000, progress=False, data_dir=tmp_path / "demo")
    assert result["paused_by"] == "watch"
    assert "reply rate" in result["evidence"] and "verizon" not in result["evidence"]
    assert result["trip_latency_texts"] is not None and result["trip_latency_texts"] > 0
    assert (result["lost"], result["doubled"]) == (0, 0)
    assert result["delivered"] == 5000  # as sendq was told: the silent ones say delivered
