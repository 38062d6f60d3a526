"""The deliverability watch's drills on real processes, at a small scale.

Workers, webhooks and the simulator run as processes on loopback; the drills
(worker/drills/watch.py, watch_alarms.py) are the benchmark's with fewer texts,
quicker receipts and, for the silent carrier, people who answer more often, so
that each shows its behaviour within a test's time. The targets (texts and
seconds to a trip) are the benchmark's to measure, not asserted here.
"""

from __future__ import annotations

from pathlib import Path

from worker.drills import watch, watch_alarms
from worker.drills.watch_run import Lognormal

QUICK_RECEIPTS = Lognormal(0.5, 3.0)
# Three times the benchmark's rates: the evidence a trip needs comes three times sooner.
CHATTY = {carrier: 3 * rate for carrier, rate in watch.SILENT_REPLIES.items()}


def test_a_carrier_that_says_delivered_but_drops_the_texts_is_paused_by_the_watch(
    private_redis, tmp_path: Path
) -> None:
    url, _ = private_redis
    f = watch.silent(url, tmp_path / "logs", texts=2400, replies=CHATTY, receipts=QUICK_RECEIPTS)

    assert f.first_by == "watch", f.first_why
    assert f.watch_evidence.startswith("reply rate "), f.watch_evidence
    assert " delivered vs " in f.watch_evidence
    assert f.watch_evidence.endswith(")") and " on att and tmobile (p " in f.watch_evidence
    assert f.texts_to_stop is not None and 0 < f.texts_to_stop < f.texts
    assert (f.sent_while_paused, f.lost, f.doubled) == (0, 0, 0)


def test_delivery_quietly_cut_to_half_stops_the_carrier_with_the_evidence(
    private_redis, tmp_path: Path
) -> None:
    url, _ = private_redis
    f = watch.cut(url, tmp_path / "logs", texts=2400, receipts=QUICK_RECEIPTS, await_watch_s=0)

    # The cut's receipts (Twilio 30003: ambiguous) weigh on the carrier breaker too,
    # and with receipts this quick it may well open first.
    if f.first_by == "breaker":
        assert "30003" in f.first_why, f.first_why
    else:
        assert f.first_by == "watch", f.first_why
        assert f.first_why.startswith("delivery rate "), f.first_why
        assert " on att and tmobile (p " in f.first_why
    assert f.texts_to_stop is not None and 0 < f.texts_to_stop < f.texts
    assert (f.sent_while_paused, f.lost, f.doubled) == (0, 0, 0)


def test_a_normal_campaign_trips_nothing(private_redis, tmp_path: Path) -> None:
    url, _ = private_redis
    f = watch_alarms.false_alarms(
        lambda seed: url, tmp_path / "runs", scale=0.06, seeds=(7,), receipts=QUICK_RECEIPTS
    )

    [run] = f.runs
    assert run.texts == 3000
    assert (f.trips, f.breaker_opens) == (0, 0), f.as_dict()
    assert f.closest < 0
    assert (f.sent_while_paused, f.lost, f.doubled) == (0, 0, 0)
