"""The watch end to end on the suite's real Redis: counts fed through WatchCounters,
rounds run by Watch.check, real carrier breakers, alerts posted to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from tests.test_alerts import AlertReceiver, alert_receiver
from worker import keys
from worker.alerts import Alerter
from worker.breaker import AsyncBreakers, Breakers, Decision, Policy, State
from worker.store import now_ms
from worker.verdicts import FAILURE_WEIGHT, SUCCESS_WEIGHT
from worker.watch import Action, Watch, WatchCounters, WatchCountersSync, watch_status
from worker.watch.model import Layout
from worker.watch.settings import DeliverySettings, RepliesSettings, WatchSettings

CARRIERS = ("att", "tmobile", "verizon")
NORMAL = {"att": 0.035, "tmobile": 0.04, "verizon": 0.045}
SILENT_VERIZON = {**NORMAL, "verizon": 0.0}


class ThreadedBreakers:
    """The operators' (synchronous) carrier breakers, called from a thread."""

    def __init__(self, breakers: Breakers) -> None:
        self.breakers = breakers

    async def pause(self, name: str, *, who: str, reason: str) -> Decision:
        return await asyncio.to_thread(self.breakers.pause, name, who=who, reason=reason)

    async def state(self, name: str) -> State:
        status = await asyncio.to_thread(self.breakers.status, name)
        return State(status["state"])

    async def state_since(self, name: str) -> tuple[State, int, int]:
        status = await asyncio.to_thread(self.breakers.status, name)
        return State(status["state"]), status["since_ms"], status["resumed_ms"]


def settings(**overrides: Any) -> WatchSettings:
    """Small windows, so a test feeds minutes of traffic, not hours."""
    base: dict[str, Any] = {
        "check_s": 0.5,
        "bucket_s": 5,
        "window_s": 300,
        "baseline_s": 0,
        "due_s": 30,
        "reply_lag_s": 60,
    }
    return WatchSettings(**{**base, **overrides})


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with alert_receiver() as r:
        yield r


def carrier_breakers(client: redis.Redis, ns: str) -> Breakers:
    return Breakers(client, "carrier", Policy(), ns)


def make_watch(
    aclient: aioredis.Redis, client: redis.Redis, ns: str, conf: WatchSettings, url: str
) -> Watch:
    counters = WatchCounters(aclient, Layout.of(conf), ns)
    breakers = ThreadedBreakers(carrier_breakers(client, ns))
    return Watch(counters, conf, breakers, Alerter([url]))


async def feed(
    counters: WatchCounters,
    *,
    seconds: float,
    per_s: float,
    replies: Mapping[str, float],
    carriers: Sequence[str] = CARRIERS,
    no_receipts: Sequence[str] = (),
    undelivered: Mapping[str, float] | None = None,
    ending_s_ago: float = 0.0,
    seed: int = 1,
) -> None:
    """Texts sent evenly over ``seconds``, with their receipts (2 s later) and replies
    (3 s after that), as far as they would have come by now."""
    rng = random.Random(seed)
    end = now_ms() - int(ending_s_ago * 1000)
    start = end - int(seconds * 1000)
    events: list[Awaitable[None]] = []
    for i in range(int(seconds * per_s)):
        sent = start + int(i * 1000 / per_s)
        carrier = carriers[i % len(carriers)]
        events.append(counters.sent(carrier, "gotv", sent_ms=sent))
        if carrier in no_receipts or sent + 2000 > end:
            continue
        delivered = rng.random() >= (undelivered or {}).get(carrier, 0.01)
        events.append(counters.receipt(carrier, "gotv", delivered, sent_ms=sent, at_ms=sent + 2000))
        if delivered and sent + 5000 <= end and rng.random() < replies[carrier]:
            events.append(counters.reply(carrier, "gotv", sent_ms=sent, at_ms=sent + 5000))
    for i in range(0, len(events), 8):  # a few at a time: the pool's connections are few
        await asyncio.gather(*events[i : i + 8])


async def a_round(watch: Watch) -> list[Action]:
    """Wait for this watch's next round (the last one's claim must lapse first)."""
    deadline = time.monotonic() + 10
    while (actions := await watch.check()) is None:
        assert time.monotonic() < deadline, "no check round ran"
        await asyncio.sleep(0.05)
    return actions


async def test_a_carrier_whose_replies_stop_is_paused_with_the_evidence(
    aclient, client, ns, receiver
) -> None:
    watch = make_watch(aclient, client, ns, settings(), receiver.url)
    await feed(watch.counters, seconds=240, per_s=12, replies=SILENT_VERIZON)

    actions = await a_round(watch)

    assert [(a.carrier, a.signal, a.did) for a in actions] == [("verizon", "replies", "paused")]
    status = carrier_breakers(client, ns).status("verizon:gotv")
    assert (status["state"], status["by"]) == ("paused", "watch")
    assert status["why"].startswith("reply rate 0.0% over ")
    assert " delivered vs " in status["why"]
    assert status["why"].endswith(" on att and tmobile (p < 0.001)")
    assert carrier_breakers(client, ns).history("verizon:gotv")[0]["who"] == "watch"
    assert await watch.alerter.drain(5.0)
    [alert] = receiver.requests
    assert (alert["name"], alert["to"], alert["by"]) == ("verizon:gotv", "paused", "watch")
    assert alert["why"] == status["why"]
    # The next round sees the trip on record: no second pause, no second alert.
    assert await a_round(watch) == []
    assert await watch.alerter.drain(5.0)
    assert len(receiver.requests) == 1


async def test_a_normal_campaign_trips_nothing_and_shows_every_rate(
    aclient, client, ns, receiver
) -> None:
    conf = settings()
    watch = make_watch(aclient, client, ns, conf, receiver.url)
    await feed(watch.counters, seconds=240, per_s=12, replies=NORMAL)

    assert await a_round(watch) == []
    assert carrier_breakers(client, ns).names() == []

    statuses = await watch.status()
    assert [(p.carrier, p.campaign) for p in statuses] == [(c, "gotv") for c in CARRIERS]
    replies = {p.carrier: next(s for s in p.signals if s.signal == "replies") for p in statuses}
    verizon = replies["verizon"]
    assert verizon.rate is not None and 0.02 < verizon.rate < 0.08
    assert verizon.others_rate is not None and 0.02 < verizon.others_rate < 0.08
    assert verizon.baseline_rate is None  # no baseline configured
    [test] = verizon.comparisons
    assert test.reference == "others"
    assert test.decision.value in ("clear", "continue")
    assert test.statistic < test.threshold
    assert [s.signal for s in statuses[0].signals] == ["delivery", "receipts", "replies", "optouts"]
    json.dumps([p.as_dict() for p in statuses])  # the CLI's --json and /metrics read this
    sync = watch_status(WatchCountersSync(client, Layout.of(conf), ns), conf)
    assert [p.as_dict() for p in sync] == [p.as_dict() for p in statuses]


async def test_an_alert_only_signal_alerts_once_pauses_nothing_and_says_when_it_clears(
    aclient, client, ns, receiver
) -> None:
    conf = settings(replies=RepliesSettings(action="alert"))
    watch = make_watch(aclient, client, ns, conf, receiver.url)
    await feed(watch.counters, seconds=240, per_s=12, replies=SILENT_VERIZON, ending_s_ago=20)

    assert [a.did for a in await a_round(watch)] == ["alerted"]
    assert carrier_breakers(client, ns).names() == []
    assert await a_round(watch) == []  # still silent: no second alert
    assert await watch.alerter.drain(5.0)
    [alert] = receiver.requests
    assert (alert["name"], alert["from"], alert["to"], alert["by"]) == (
        "verizon:gotv",
        "ok",
        "suspect",
        "watch",
    )
    assert alert["why"].startswith("reply rate 0.0% over ")

    # Its people answer again: the newest cohorts outweigh the silence.
    answering = {**NORMAL, "verizon": 0.6}
    await feed(watch.counters, seconds=12, per_s=12, replies=answering, ending_s_ago=0, seed=2)
    assert [a.did for a in await a_round(watch)] == ["cleared"]
    assert await watch.alerter.drain(5.0)
    assert [(r["from"], r["to"]) for r in receiver.requests] == [
        ("ok", "suspect"),
        ("suspect", "ok"),
    ]
    assert receiver.requests[1]["why"].startswith("replies back to normal: ")


async def test_an_operators_resume_starts_the_evidence_over(aclient, client, ns, receiver) -> None:
    watch = make_watch(aclient, client, ns, settings(), receiver.url)
    await feed(watch.counters, seconds=240, per_s=12, replies=SILENT_VERIZON)
    assert [a.did for a in await a_round(watch)] == ["paused"]

    carrier_breakers(client, ns).resume("verizon:gotv", who="maria", reason="carrier says fixed")
    assert [a.did for a in await a_round(watch)] == ["restarted"]
    # The silent cohorts are still in the window, but they came before the resume.
    assert await a_round(watch) == []
    assert carrier_breakers(client, ns).status("verizon:gotv")["state"] == "closed"


async def test_a_carrier_the_breaker_opened_is_left_to_its_probes(
    aclient, client, ns, receiver
) -> None:
    """The carrier breaker opened on the block itself: a pause on top would turn an open
    its probes can close into one only an operator lifts."""
    watch = make_watch(aclient, client, ns, settings(), receiver.url)
    breakers = carrier_breakers(client, ns)
    workers = AsyncBreakers(aclient, "carrier", Policy(), ns)
    for _ in range(Policy().consecutive):
        await workers.record("verizon:gotv", FAILURE_WEIGHT, "30007")
    assert breakers.status("verizon:gotv")["state"] == "open"
    await feed(watch.counters, seconds=240, per_s=12, replies=SILENT_VERIZON)
    assert await a_round(watch) == []
    assert breakers.status("verizon:gotv")["state"] == "open"


async def test_evidence_from_before_any_resume_is_not_held_against_the_carrier(
    aclient, client, ns, receiver
) -> None:
    """Resumed after the carrier breaker (not the watch) stopped it: the cohorts sent
    before the resume start over, as after a resume of the watch's own pause."""
    watch = make_watch(aclient, client, ns, settings(), receiver.url)
    breakers = carrier_breakers(client, ns)
    await feed(watch.counters, seconds=240, per_s=12, replies=SILENT_VERIZON)
    breakers.pause("verizon:gotv", who="maria", reason="checking with the carrier")
    breakers.resume("verizon:gotv", who="maria", reason="carrier says fixed")
    assert [a.did for a in await a_round(watch)] == ["restarted"]
    assert await a_round(watch) == []
    assert breakers.status("verizon:gotv")["state"] == "closed"


async def close_by_probes(aclient: aioredis.Redis, ns: str, name: str) -> None:
    """The carrier breaker opens on rejections and its probes pass: closed by "auto"."""
    policy = Policy(cooldown_s=0.05)
    workers = AsyncBreakers(aclient, "carrier", policy, ns)
    for _ in range(policy.consecutive):
        await workers.record(name, FAILURE_WEIGHT, "30007")
    await asyncio.sleep(0.1)
    for _ in range(policy.probes):
        assert (await workers.admit(name)).allowed
    for _ in range(policy.probes):
        await workers.record(name, SUCCESS_WEIGHT)


async def test_a_silent_carrier_whose_breaker_probes_closed_is_still_paused_on_its_replies(
    aclient, client, ns, receiver
) -> None:
    """A carrier that filters silently and now and then rejects enough to trip the
    breaker: the probes' close does not wipe the replies evidence the breaker never saw."""
    watch = make_watch(aclient, client, ns, settings(), receiver.url)
    await feed(watch.counters, seconds=240, per_s=12, replies=SILENT_VERIZON)
    await close_by_probes(aclient, ns, "verizon:gotv")
    status = carrier_breakers(client, ns).status("verizon:gotv")
    assert (status["state"], status["by"], status["resumed_ms"]) == ("closed", "auto", 0)

    actions = await a_round(watch)

    assert [(a.carrier, a.signal, a.did) for a in actions] == [("verizon", "replies", "paused")]
    assert carrier_breakers(client, ns).status("verizon:gotv")["by"] == "watch"


async def test_delivery_evidence_from_before_the_breakers_probes_closed_it_starts_over(
    aclient, client, ns, receiver
) -> None:
    """The rejections the breaker opened on, and its probes then saw end, are not
    held against the carrier by the watch as well."""
    watch = make_watch(aclient, client, ns, settings(), receiver.url)
    cut = {"verizon": 0.5}
    await feed(watch.counters, seconds=240, per_s=12, replies=NORMAL, undelivered=cut)
    await close_by_probes(aclient, ns, "verizon:gotv")

    assert [(a.signal, a.did) for a in await a_round(watch)] == [("delivery", "restarted")]
    assert await a_round(watch) == []
    assert carrier_breakers(client, ns).status("verizon:gotv")["state"] == "closed"
    # Only delivery starts over: the other signals keep every cohort.
    [verizon] = [p for p in (await watch.counters.read()).pairs if p.carrier == "verizon"]
    assert verizon.since_ms == 0
    assert list(verizon.signal_since_ms) == ["delivery"]
    assert verizon.since_for("replies") == 0 < verizon.since_for("delivery")


async def test_a_delivery_cut_that_goes_on_after_the_probes_closed_it_still_pauses(
    aclient, client, ns, receiver
) -> None:
    watch = make_watch(aclient, client, ns, settings(), receiver.url)
    cut = {"verizon": 0.5}
    await feed(watch.counters, seconds=240, per_s=12, replies=NORMAL, undelivered=cut)
    await close_by_probes(aclient, ns, "verizon:gotv")
    # The close came two minutes ago: the cut's texts since then are evidence.
    two_min_ago = now_ms() - 120_000
    await aclient.hset(keys.breaker("carrier", "verizon:gotv", ns), "since_ms", two_min_ago)

    assert [(a.signal, a.did) for a in await a_round(watch)] == [("delivery", "restarted")]
    assert [(a.signal, a.did) for a in await a_round(watch)] == [("delivery", "paused")]
    assert carrier_breakers(client, ns).status("verizon:gotv")["by"] == "watch"


async def test_a_resume_by_an_older_version_still_starts_the_evidence_over(
    aclient, client, ns, receiver
) -> None:
    """An older breaker.lua kept no resumed_ms: its resume is read from who closed it."""
    conf = settings()
    counters = WatchCounters(aclient, Layout.of(conf), ns)
    workers = AsyncBreakers(aclient, "carrier", Policy(), ns)  # the watch's, as wired
    watch = Watch(counters, conf, workers, Alerter([receiver.url]))
    breakers = carrier_breakers(client, ns)
    await feed(counters, seconds=240, per_s=12, replies=SILENT_VERIZON)
    breakers.pause("verizon:gotv", who="maria", reason="checking with the carrier")
    breakers.resume("verizon:gotv", who="maria", reason="carrier says fixed")
    await aclient.hdel(keys.breaker("carrier", "verizon:gotv", ns), "resumed_ms")

    assert [(a.signal, a.did) for a in await a_round(watch)] == [("replies", "restarted")]
    assert await a_round(watch) == []
    assert breakers.status("verizon:gotv")["state"] == "closed"


async def test_two_workers_checking_at_once_pause_and_alert_once(
    aclient, client, redis_url, ns, receiver
) -> None:
    other = aioredis.Redis.from_url(redis_url)
    try:
        conf = settings()
        first = make_watch(aclient, client, ns, conf, receiver.url)
        second = make_watch(other, client, ns, conf, receiver.url)
        await feed(first.counters, seconds=240, per_s=12, replies=SILENT_VERIZON)

        rounds = await asyncio.gather(first.check(), second.check())

        assert sorted(r is None for r in rounds) == [False, True]  # one ran the round
        assert [a.did for r in rounds if r for a in r] == ["paused"]
        assert await first.alerter.drain(5.0) and await second.alerter.drain(5.0)
        assert len(receiver.requests) == 1
    finally:
        await other.aclose()


async def test_receipts_that_stop_for_one_carrier_pause_it(aclient, client, ns, receiver) -> None:
    watch = make_watch(aclient, client, ns, settings(), receiver.url)
    await feed(watch.counters, seconds=240, per_s=12, replies=NORMAL, no_receipts=("verizon",))

    actions = await a_round(watch)

    assert [(a.carrier, a.signal, a.did) for a in actions] == [("verizon", "receipts", "paused")]
    why = carrier_breakers(client, ns).status("verizon:gotv")["why"]
    assert why.startswith("receipts overdue (past 30 s) for 100.0% of ")
    assert why.endswith(" vs 0.0% on att and tmobile (p < 0.001)")


async def test_a_campaign_on_one_carrier_is_held_to_its_own_baseline_when_asked(
    aclient, client, ns, receiver
) -> None:
    # Replies against the baseline are off by default: an inbound outage is ours.
    conf = settings(baseline_s=600, replies={"baseline": True})
    watch = make_watch(aclient, client, ns, conf, receiver.url)
    alone = ("verizon",)
    # Ten minutes of people answering, then the window's five minutes of silence.
    await feed(
        watch.counters,
        seconds=600,
        per_s=5,
        replies={"verizon": 0.05},
        carriers=alone,
        ending_s_ago=300,
    )
    await feed(watch.counters, seconds=300, per_s=5, replies={"verizon": 0.0}, carriers=alone)

    actions = await a_round(watch)

    assert [(a.carrier, a.signal, a.did) for a in actions] == [("verizon", "replies", "paused")]
    assert actions[0].evidence.endswith(" on verizon's previous 10 min (p < 0.001)")


async def test_a_disabled_watch_runs_no_round(aclient, client, ns, receiver) -> None:
    watch = make_watch(aclient, client, ns, settings(enabled=False), receiver.url)
    await feed(watch.counters, seconds=240, per_s=12, replies=SILENT_VERIZON)
    assert await watch.check() is None
    assert carrier_breakers(client, ns).names() == []


def test_settings_that_contradict_themselves_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"\[watch.replies\] ok_ratio 0.5 and bad_ratio 0.9"):
        WatchSettings(replies=RepliesSettings(ok_ratio=0.5, bad_ratio=0.9))
    with pytest.raises(ValueError, match=r"\[watch.delivery\] .* must be 1 or more"):
        WatchSettings(delivery=DeliverySettings(ok_ratio=0.5, bad_ratio=0.2))
    with pytest.raises(ValueError, match="window_s"):
        WatchSettings(window_s=60, bucket_s=10)
    with pytest.raises(ValueError, match="due_s"):
        WatchSettings(due_s=900)
    with pytest.raises(ValueError, match="extra"):
        WatchSettings.model_validate({"alpah": 0.01})


async def test_replies_that_stop_for_every_carrier_at_once_pause_no_carrier(
    aclient, client, ns, receiver
) -> None:
    """Review finding: an outage of sendq's own inbound route (every carrier's replies
    gone at once) paused every carrier of the campaign through their baselines."""
    conf = settings(baseline_s=600)
    watch = make_watch(aclient, client, ns, conf, receiver.url)
    normal = {"att": 0.04, "tmobile": 0.04, "verizon": 0.04}
    await feed(watch.counters, seconds=600, per_s=6, replies=normal, ending_s_ago=300)
    await feed(
        watch.counters, seconds=300, per_s=6, replies={"att": 0.0, "tmobile": 0.0, "verizon": 0.0}
    )
    actions = await a_round(watch)
    assert [a for a in actions if a.did == "paused"] == []
    assert carrier_breakers(client, ns).names() == []
