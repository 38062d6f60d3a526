"""The demo plays the seed story end to end, and its figures come from the handsets."""

from __future__ import annotations

from pathlib import Path

from worker import demo

SEED_STORY_KEYS = {"pause_latency_s", "sent_into_block", "held_peak", "lost", "doubled"}


def test_a_text_no_inbox_holds_is_lost_even_when_sendq_calls_it_final() -> None:
    sim = {"delivered_to_handsets": 95, "doubled": 0}
    # 100 final in sendq's records, 5 of them failed, and the other 95 in their inboxes...
    assert demo._lost(100, final=100, failed=5, sim=sim) == 0
    # ...and when one "delivered" text never reached its handset, it is lost.
    assert demo._lost(100, final=100, failed=5, sim={"delivered_to_handsets": 94}) == 1


def test_a_double_does_not_hide_a_lost_text() -> None:
    sim = {"delivered_to_handsets": 95, "doubled": 1}
    assert demo._lost(100, final=100, failed=5, sim=sim) == 1


def test_a_text_not_final_is_lost() -> None:
    assert demo._lost(100, final=98, failed=0, sim={"delivered_to_handsets": 100}) == 2


def test_the_demo_pauses_the_filtering_carrier_and_loses_nothing(tmp_path: Path) -> None:
    result = demo.run(count=3000, progress=False, data_dir=tmp_path / "demo")
    assert set(result) >= SEED_STORY_KEYS
    assert (result["lost"], result["doubled"], result["sent_while_paused"]) == (0, 0, 0)
    assert result["enqueued"] == 3000
    assert result["held_peak"] > 0 and result["pause_latency_s"] is not None
    assert result["delivered"] + result["failed"] == 3000
    assert result["handsets_received"] == result["delivered"]
