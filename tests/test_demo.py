"""The demo plays the seed story end to end, and its figures come from the handsets."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from worker import demo
from worker.enqueue import Producer

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
    # Every failure is a Verizon text filtered before its breaker opened.
    assert result["filtered_before_pause"] == result["failed"] > 0
    assert result["failed_other"] == 0
    assert result["handsets_received"] == result["delivered"]


def finished(producer: Producer, to: str, status: str, **fields: str) -> str:
    """A demo text that ended in ``status``, with the receipt fields it got."""
    msg_id = producer.enqueue({"to": to, "body": f"demo text to {to}"}).message_id
    producer.store.transition(msg_id, ["queued"], status, reason="test", fields=fields)
    return msg_id


def test_the_failed_texts_are_told_apart_filtered_before_the_pause_or_other(
    client, ns, queue
) -> None:
    producer = Producer(client, ns=ns, queue=queue)
    blocked = {"carrier": "verizon", "receipt_category": "carrier_block"}
    ids = [
        finished(producer, "+12015550101", "undelivered", **blocked),
        finished(producer, "+12015550102", "undelivered", **blocked),
        finished(
            producer, "+12015550103", "undelivered", carrier="att", receipt_category="bad_number"
        ),
        finished(producer, "+12015550104", "delivered", carrier="verizon"),
        finished(producer, "+12015550105", "dead", carrier="verizon"),
    ]

    assert demo._filtered_before_pause(producer, ids) == 2


def summary_text(**figures: object) -> str:
    summary = {key: 0 for key in demo.SUMMARY_KEYS}
    summary.update(figures)
    console = Console(record=True, width=200)
    demo.print_summary(summary, console)
    return console.export_text()


def test_the_summary_says_the_failed_texts_were_filtered_before_the_pause() -> None:
    text = summary_text(failed=190, filtered_before_pause=190, failed_other=0)

    assert (
        "failed             190  (190 verizon texts filtered (30007) before its breaker paused it)"
        in text
    )


def test_the_summary_names_other_failures_apart() -> None:
    text = summary_text(failed=192, filtered_before_pause=190, failed_other=2)

    assert "(190 verizon texts filtered (30007) before its breaker paused it; 2 other)" in text


def test_a_run_without_failures_says_nothing_more() -> None:
    assert "failed             0\n" in summary_text(failed=0)
