"""The watch's counts on the suite's real Redis: where each event lands, what is kept."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from worker import keys
from worker.store import now_ms
from worker.watch.counters import WatchCounters, WatchCountersSync
from worker.watch.model import (
    BASELINE_BUCKET_S,
    Counts,
    Layout,
    PairCounts,
    TripRecord,
    counter_for,
)

LAYOUT = Layout(bucket_s=5, window_s=300, baseline_s=600, due_s=30, reply_lag_s=60)


def counters(aclient: aioredis.Redis, ns: str) -> WatchCounters:
    return WatchCounters(aclient, LAYOUT, ns)


def pair_of(snapshot_pairs: tuple[PairCounts, ...], carrier: str) -> PairCounts:
    return next(p for p in snapshot_pairs if p.carrier == carrier)


def cohort(sent_ms: int) -> int:
    at_s = sent_ms // 1000
    return at_s - at_s % LAYOUT.bucket_s


async def test_a_text_and_its_receipt_and_reply_count_in_the_cohort_it_was_sent_in(
    aclient, ns
) -> None:
    c = counters(aclient, ns)
    sent = now_ms() - 20_000
    await c.sent("verizon", "gotv", sent_ms=sent)
    await c.receipt("verizon", "gotv", True, sent_ms=sent)
    await c.reply("verizon", "gotv", sent_ms=sent)
    await c.optout("verizon", "gotv", sent_ms=sent)
    snapshot = await c.read()
    pair = pair_of(snapshot.pairs, "verizon")
    assert pair.campaign == "gotv"
    assert pair.buckets == {
        cohort(sent): Counts(sent=1, delivered=1, replies=1, optouts=1),
    }
    minute = sent // 1000 - (sent // 1000) % BASELINE_BUCKET_S
    assert pair.baseline == {minute: Counts(sent=1, delivered=1, replies=1, optouts=1)}


async def test_a_receipt_after_the_due_time_counts_late_not_delivered(aclient, ns) -> None:
    c = counters(aclient, ns)
    sent = now_ms() - 100_000
    await c.sent("att", "gotv", sent_ms=sent)
    await c.receipt("att", "gotv", True, sent_ms=sent)  # 100 s after: due_s is 30
    await c.sent("att", "gotv", sent_ms=sent + 1)
    await c.receipt("att", "gotv", False, sent_ms=sent + 1, at_ms=sent + 2_000)
    counts = pair_of((await c.read()).pairs, "att").buckets[cohort(sent)]
    assert counts == Counts(sent=2, undelivered=1, late=1)
    assert counts.overdue == 1  # no receipt within due_s, though one came later


async def test_a_reply_after_the_reply_lag_is_not_counted(aclient, ns) -> None:
    c = counters(aclient, ns)
    sent = now_ms() - 100_000
    await c.sent("tmobile", "gotv", sent_ms=sent)
    await c.reply("tmobile", "gotv", sent_ms=sent)  # 100 s after: the lag is 60
    await c.reply("tmobile", "gotv", sent_ms=sent, at_ms=sent + 59_000)
    await c.optout("tmobile", "gotv", sent_ms=sent)
    counts = pair_of((await c.read()).pairs, "tmobile").buckets[cohort(sent)]
    assert (counts.replies, counts.optouts) == (1, 0)


async def test_an_event_for_a_text_sent_before_anything_kept_writes_nothing(aclient, ns) -> None:
    c = counters(aclient, ns)
    long_ago = now_ms() - (LAYOUT.window_s + LAYOUT.baseline_s + 2 * BASELINE_BUCKET_S) * 1000
    await c.receipt("verizon", "gotv", True, sent_ms=long_ago, at_ms=long_ago + 1000)
    assert (await c.read()).pairs == ()
    assert not await aclient.exists(keys.watch_counts("verizon", "gotv", ns))


async def test_an_event_older_than_the_window_still_counts_in_the_baseline(aclient, ns) -> None:
    c = counters(aclient, ns)
    before_window = now_ms() - (LAYOUT.window_s + 120) * 1000
    await c.sent("verizon", "gotv", sent_ms=before_window)
    pair = pair_of((await c.read()).pairs, "verizon")
    assert pair.buckets == {}
    assert sum(x.sent for x in pair.baseline.values()) == 1


async def test_every_process_counts_into_the_same_place(redis_url, ns) -> None:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(3)]
    try:
        processes = [WatchCounters(cl, LAYOUT, ns) for cl in clients]
        sent = now_ms() - 1000
        await asyncio.gather(
            *(p.sent("att", "gotv", sent_ms=sent) for p in processes for _ in range(40)),
            *(p.receipt("att", "gotv", True, sent_ms=sent) for p in processes for _ in range(30)),
        )
        counts = pair_of((await processes[0].read()).pairs, "att").buckets[cohort(sent)]
        assert (counts.sent, counts.delivered) == (120, 90)
    finally:
        for cl in clients:
            await cl.aclose()


async def test_the_synchronous_reader_reads_what_the_workers_wrote(aclient, client, ns) -> None:
    c = counters(aclient, ns)
    sent = now_ms() - 5_000
    for carrier in ("att", "verizon"):
        await c.sent(carrier, "gotv", sent_ms=sent)
        await c.sent(carrier, "rally", sent_ms=sent)
    snapshot = WatchCountersSync(client, LAYOUT, ns).read()
    assert sorted(snapshot.by_campaign()) == ["gotv", "rally"]
    assert sorted(p.carrier for p in snapshot.by_campaign()["gotv"]) == ["att", "verizon"]
    assert snapshot.pairs == (await c.read(snapshot.now_ms)).pairs


async def test_the_check_round_prunes_aged_cohorts_and_idle_pairs(aclient, ns) -> None:
    c = counters(aclient, ns)
    now = now_ms()
    await c.sent("att", "gotv", sent_ms=now - 1000)
    await c.restart_evidence("att", "gotv", now - 500)
    await c.restart_evidence("att", "gotv", now - 400, ["delivery"])
    fine = keys.watch_counts("att", "gotv", ns)
    assert await aclient.hlen(fine) == 1
    # Past the window: the cohort leaves the window hash, and stays in the baseline.
    later = now + (LAYOUT.window_s + 2 * LAYOUT.bucket_s) * 1000
    snapshot = await c.read(later)
    assert pair_of(snapshot.pairs, "att").buckets == {}
    await c.prune(snapshot)
    assert await aclient.hlen(fine) == 0
    assert await aclient.hlen(keys.watch_baseline("att", "gotv", ns)) == 1
    # Past everything kept: the pair is gone.
    idle = now + LAYOUT.keep_ms() + 1000
    await c.prune(await c.read(idle))
    assert (await c.read(idle)).pairs == ()
    assert not await aclient.exists(keys.watch_baseline("att", "gotv", ns))
    assert await aclient.zcard(keys.watch_pairs(ns)) == 0
    assert await aclient.hlen(keys.watch_since(ns)) == 0  # its restarts too, every signal's


async def test_one_check_round_at_a_time_across_processes(aclient, redis_url, ns) -> None:
    other_client = aioredis.Redis.from_url(redis_url)
    try:
        mine, theirs = counters(aclient, ns), WatchCounters(other_client, LAYOUT, ns)
        assert await mine.take_round(100)
        assert not await theirs.take_round(100)
        deadline = time.monotonic() + 10
        while not await theirs.take_round(100):  # the claim lapses on its own
            assert time.monotonic() < deadline, "a round's claim never lapsed"
            await asyncio.sleep(0.02)
    finally:
        await other_client.aclose()


async def test_a_trip_is_recorded_once_and_resuming_restarts_the_evidence(aclient, ns) -> None:
    c = counters(aclient, ns)
    await c.sent("verizon", "gotv")
    record = TripRecord("replies", "pause", 1, "reply rate 0.0% ...", "others", 12.5, 0.0001)
    assert await c.record_trip("verizon", "gotv", record)
    assert not await c.record_trip("verizon", "gotv", record)  # a second round: not first
    snapshot = await c.read()
    assert snapshot.trips == {"verizon:gotv|replies": record}
    await c.restart_evidence("verizon", "gotv", 12345)
    assert pair_of((await c.read()).pairs, "verizon").since_ms == 12345
    await c.restart_evidence("verizon", "gotv", 23456, ["delivery"])  # one signal's only
    verizon = pair_of((await c.read()).pairs, "verizon")
    assert (verizon.since_for("delivery"), verizon.since_for("replies")) == (23456, 12345)
    assert await c.clear_trip("verizon", "gotv", "replies")
    assert not await c.clear_trip("verizon", "gotv", "replies")
    assert (await c.read()).trips == {}


async def test_a_campaign_name_with_a_colon_is_read_back_whole(aclient, ns) -> None:
    c = counters(aclient, ns)
    await c.sent("att", "gotv:wave-2")
    assert [(p.carrier, p.campaign) for p in (await c.read()).pairs] == [("att", "gotv:wave-2")]


def test_an_unknown_event_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'bounce' is not a watch event"):
        counter_for(LAYOUT, "bounce", 0, 0)
