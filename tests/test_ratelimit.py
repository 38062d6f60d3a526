"""GCRA reservations in Redis: exact slots, all or none, never spinning."""

from __future__ import annotations

import multiprocessing
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import redis

from worker.ratelimit import DailyCap, Limiter, Rate

T0 = 1_800_000_000_000_000  # an arbitrary instant, in microseconds
PACIFIC = ZoneInfo("America/Los_Angeles")


def us(dt: datetime) -> int:
    return int(dt.timestamp() * 1_000_000)


def test_a_burst_goes_at_once_then_each_slot_is_one_interval_later(client, ns) -> None:
    limiter = Limiter(client, ns)
    rate = [Rate("number:a", rate=10, burst=3)]  # 100 ms apart, 3 at once
    waits = [limiter.reserve(rate, now_us=T0).wait_us for _ in range(6)]
    assert waits == [0, 0, 0, 100_000, 200_000, 300_000]


def test_a_reserved_slot_is_held_so_nobody_is_bounced_twice(client, ns) -> None:
    limiter = Limiter(client, ns)
    rate = [Rate("number:b", rate=1)]
    assert limiter.reserve(rate, now_us=T0).go_now
    later = limiter.reserve(rate, now_us=T0)
    assert (later.wait_us, later.reserved) == (1_000_000, True)
    # At its slot the text is sent without asking again; the next one queues behind it.
    assert limiter.reserve(rate, now_us=T0 + 1_000_000).wait_us == 1_000_000


def test_segments_are_counted_not_texts(client, ns) -> None:
    limiter = Limiter(client, ns)
    rate = [Rate("number:c", rate=10, burst=3)]
    assert limiter.reserve(rate, segments=3, now_us=T0).go_now
    assert limiter.reserve(rate, segments=1, now_us=T0).wait_us == 100_000


def test_a_short_wait_is_held_on_every_key(client, ns) -> None:
    limiter = Limiter(client, ns)
    account, number = Rate("acct:d", rate=10, burst=1), Rate("number:d", rate=5)
    assert limiter.reserve([account, number], now_us=T0).go_now
    second = limiter.reserve([account, number], now_us=T0)
    assert (second.wait_us, second.binding, second.held) == (
        200_000,
        "number:d",
        ("acct:d", "number:d"),
    )
    # The account was charged at the slot too: its next slot is one interval after it.
    assert limiter.reserve([account], now_us=T0).wait_us == 300_000


def test_a_long_wait_holds_only_the_bottleneck_so_other_texts_keep_flowing(client, ns) -> None:
    limiter = Limiter(client, ns)
    account, number = Rate("acct:e", rate=100, burst=10), Rate("number:e", rate=1)
    assert limiter.reserve([account, number], now_us=T0).go_now
    second = limiter.reserve([account, number], now_us=T0)
    assert (second.wait_us, second.binding, second.held) == (1_000_000, "number:e", ("number:e",))
    # Another number's texts still go now on the same account.
    assert limiter.reserve([account, Rate("number:other", rate=1)], now_us=T0).go_now
    # At its slot the text asks only the limiters that did not hold it.
    assert limiter.reserve([account], now_us=T0 + 1_000_000).go_now
    assert limiter.reserve([number], now_us=T0).wait_us == 2_000_000


def test_asking_without_reserving_changes_nothing(client, ns) -> None:
    limiter = Limiter(client, ns)
    rate = [Rate("number:e2", rate=1)]
    limiter.reserve(rate, now_us=T0)
    peek = limiter.reserve(rate, now_us=T0, hold_all_us=-1)
    assert (peek.wait_us, peek.reserved) == (1_000_000, False)
    assert limiter.reserve(rate, now_us=T0).wait_us == 1_000_000


def test_a_full_daily_cap_blocks_every_key_until_midnight_pacific(client, ns) -> None:
    limiter = Limiter(client, ns)
    # A coming evening: the cap's key expires at its (real) midnight, so an
    # evening already past would find it gone.
    day = datetime.now(PACIFIC).date() + timedelta(days=2)
    evening = us(datetime(day.year, day.month, day.day, 23, 59, 0, tzinfo=PACIFIC))
    cap = DailyCap("tmobile:brand1", cap=2)
    number = Rate("number:f", rate=100, burst=100)
    assert limiter.reserve([number, cap], now_us=evening).go_now
    assert limiter.reserve([number, cap], now_us=evening).go_now
    blocked = limiter.reserve([number, cap], now_us=evening)
    assert (blocked.wait_us, blocked.reserved, blocked.binding) == (
        60_000_000,
        False,
        "tmobile:brand1",
    )
    # The number's key was not charged for the refused text.
    assert limiter.reserve([number], now_us=evening).go_now
    after_midnight = evening + 61_000_000
    assert limiter.reserve([number, cap], now_us=after_midnight).go_now


def test_the_daily_cap_resets_at_the_real_midnight_across_a_dst_change() -> None:
    cap = DailyCap("x", cap=1)
    before = us(datetime(2026, 11, 1, 0, 30, tzinfo=PACIFIC))  # the night DST ends
    assert cap.reset_us(before) == us(datetime(2026, 11, 2, 0, 0, tzinfo=PACIFIC))


def test_the_redis_server_clock_is_used_when_none_is_given(client, ns) -> None:
    limiter = Limiter(client, ns)
    rate = [Rate("number:g", rate=1)]
    assert limiter.reserve(rate).go_now
    wait = limiter.reserve(rate).wait_us
    assert 900_000 < wait <= 1_000_000


def _contend(url: str, ns: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    limiter = Limiter(redis.Redis.from_url(url), ns)
    rate = [Rate("number:shared", rate=50, burst=5)]
    slots = []
    for _ in range(n):
        r = limiter.reserve(rate)
        slots.append(time.time_ns() // 1000 + r.wait_us)
    out.put(slots)


def test_two_processes_contending_never_exceed_the_limit(redis_url, ns) -> None:
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [
        multiprocessing.Process(target=_contend, args=(redis_url, ns, 100, out)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    slots = sorted(out.get(timeout=30) + out.get(timeout=30))
    for p in procs:
        p.join(10)
    # 200 slots at 50/s with a burst of 5: any 1 s window holds at most 50 + 5.
    for i, start in enumerate(slots):
        in_window = sum(1 for s in slots[i:] if s < start + 1_000_000)
        assert in_window <= 55 + 1  # +1 for clock-read jitter between processes
    span_s = (slots[-1] - slots[0]) / 1_000_000
    assert span_s >= (200 - 5) / 50 - 0.05
