"""One run of a deliverability-watch drill on real processes (drills/watch.py's harness).

Workers, webhooks and the simulator run as processes on loopback (``Stack``). One
campaign texts people on AT&T, T-Mobile and Verizon in turn, enqueued at a steady
``rate_per_s`` as its texters would send them. The simulator's handsets reply at
rates that differ a little by carrier, receipts come after a lognormal delay, a
share of every carrier's texts is quietly undelivered (unreachable handsets), and
a ``fault`` rule for Verizon from ``from_s`` is the filtering to catch.

Texts keep coming until ``tail_s`` after Verizon's breaker first stops them (the
carrier breaker opens it, or the watch pauses it); then the fault is lifted, the
breaker resumed, and every text waited for until it is final. The ``Outcome`` is
read from the simulator (what Verizon's provider accepted, when), the breakers'
audit and sendq's records.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import redis.asyncio as aioredis

from worker.breaker import Breakers
from worker.carriers import CarrierResolver
from worker.models import FINAL_STATUSES
from worker.producer import Producer
from worker.services import Stack
from worker.settings import CarrierBreakerSettings
from worker.simulator.carriers import carrier_of, number_for
from worker.simulator.client import SimulatorClient
from worker.wiring import breaker_policy

CARRIERS = ("att", "tmobile", "verizon")
CAMPAIGN = "gotv"
FAULTY = "verizon"
WHO = "watch"
# A breaker in these states admits none of its texts.
STOPPED = ("open", "paused")
FEED_TICK_S = 0.1
POLL_S = 0.05
# Carrier cache writes in flight at once (the async pool's connections are few).
LEARN_AT_ONCE = 8


@dataclass(frozen=True, slots=True)
class Lognormal:
    median_s: float
    p99_s: float


@dataclass(frozen=True, slots=True)
class Traffic:
    """The campaign's stream, its people and its carriers' receipts."""

    texts: int
    rate_per_s: float
    replies: Mapping[str, float]  # per carrier: replies per text that reached a handset
    reply_delay: Lognormal
    receipt_delay: Lognormal
    # Every carrier's everyday unreachable handsets: an "undelivered" receipt, quietly.
    undelivered: float = 0.01
    seed: int = 1


@dataclass(frozen=True, slots=True)
class Stop:
    """A transition of Verizon's breaker that stops its texts, from the audit."""

    to: str  # "open" (the carrier breaker) or "paused"
    who: str  # "auto" (the carrier breaker), "watch", ...
    why: str
    at_ms: int
    # Verizon texts its provider accepted from the fault's start (or the campaign's).
    texts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    texts: int
    fault_ms: int | None
    stops: tuple[Stop, ...]  # oldest first
    audit: tuple[dict[str, str], ...]  # every carrier breaker transition
    # Verizon texts its provider accepted while its breaker was open or paused (until
    # the drill resumed it), less those already past the breaker when it stopped them.
    sent_while_stopped: int
    in_flight: int
    # The campaign's texts its providers accepted a second, first to last.
    sent_per_s: float
    lost: int
    doubled: int
    seconds: float

    def first(self) -> Stop | None:
        return self.stops[0] if self.stops else None

    def by_watch(self) -> Stop | None:
        return next((s for s in self.stops if s.who == WHO), None)

    def seconds_to(self, stop: Stop | None) -> float | None:
        if stop is None or self.fault_ms is None:
            return None
        return round((stop.at_ms - self.fault_ms) / 1000, 2)


@dataclass(frozen=True, slots=True)
class Drill:
    traffic: Traffic
    # A simulator rule for Verizon's texts (from_s on the scenario clock), or None.
    fault: Mapping[str, Any] | None = None
    # SENDQ_... settings for every process.
    env: Mapping[str, str] = field(default_factory=dict)
    # More rules for Verizon's texts, played and lifted with the fault.
    fault_extra: tuple[Mapping[str, Any], ...] = ()
    # Texts keep coming this long after the first stop (or the watch's, if awaited).
    tail_s: float = 3.0
    # After the carrier breaker stops Verizon, keep going up to this long for the watch.
    await_watch_s: float = 0.0
    timeout_s: float = 600.0
    # Each run its own campaign, so runs may share a Redis.
    campaign: str = CAMPAIGN

    @property
    def breaker(self) -> str:
        return f"{FAULTY}:{self.campaign}"

    def jobs(self) -> list[dict[str, str]]:
        seed = self.traffic.seed
        return [
            {
                "to": number_for(CARRIERS[i % len(CARRIERS)], i),
                "body": f"GOTV {seed}: polls are open 7am-8pm, need a ride? Reply here #{i}",
                "campaign": self.campaign,
            }
            for i in range(self.traffic.texts)
        ]

    def scenario(self, *, with_fault: bool = True) -> dict[str, Any]:
        t = self.traffic
        rules: list[dict[str, Any]] = []
        if self.fault and with_fault:
            # The extra rules first: a rule with an error decides before a quiet fate.
            rules += [{"carrier": FAULTY, **extra} for extra in self.fault_extra]
            rules.append({"carrier": FAULTY, **self.fault})
        if t.undelivered:
            rules.append({"deliver_share": 1.0 - t.undelivered})
        return {
            "seed": t.seed,
            "dlr_delay_median_s": t.receipt_delay.median_s,
            "dlr_delay_p99_s": t.receipt_delay.p99_s,
            "rules": rules,
            "replies": {
                "rate": min(t.replies.values()),
                "carriers": dict(t.replies),
                "delay_median_s": t.reply_delay.median_s,
                "delay_p99_s": t.reply_delay.p99_s,
                "seed": t.seed,
            },
        }


def run(
    redis_url: str, workdir: Path, drill: Drill, observe: Callable[[], None] | None = None
) -> Outcome:
    """The drill on a fresh stack; ``observe`` is called on every poll while it runs."""
    started = time.monotonic()
    client = redis.Redis.from_url(redis_url)
    producer = Producer(client)
    breakers = Breakers(client, "carrier", breaker_policy(CarrierBreakerSettings()))
    jobs = drill.jobs()
    asyncio.run(_learn_carriers(redis_url, jobs))
    env = {"SENDQ_LOG_LEVEL": "warning", **drill.env}
    stack = Stack(redis_url=redis_url, workdir=workdir, extra_env=env)
    with stack, SimulatorClient(stack.sim_url) as sim:
        fault_ms = _start(stack, sim, producer, drill)
        feeder = Feeder(redis_url, jobs, drill.traffic.rate_per_s)
        feeder.start()
        try:
            _until_stopped(breakers, producer, feeder, drill, observe or (lambda: None))
        finally:
            feeder.stop()
        history = list(reversed(breakers.history(drill.breaker)))
        resumed_ms = _resume(stack, breakers, drill)
        _wait(lambda: _open(producer, drill.campaign) == 0, drill.timeout_s)
        spans = _stopped(history, resumed_ms)
        after = sum(_accepted(sim, start, end) for start, end in spans)
        in_flight = sum(_in_flight(producer, feeder.ids, start) for start, _ in spans)
        return Outcome(
            texts=len(feeder.ids),
            fault_ms=fault_ms,
            stops=tuple(_stops(history, lambda at_ms: _accepted(sim, fault_ms, at_ms))),
            audit=tuple(_audit(breakers, drill.campaign)),
            sent_while_stopped=max(0, after - in_flight),
            in_flight=in_flight,
            sent_per_s=_sent_per_s(sim),
            lost=_unfinished(producer, feeder.ids),
            doubled=int(sim.report().get("doubled", 0)),
            seconds=round(time.monotonic() - started, 1),
        )


def _start(stack: Stack, sim: SimulatorClient, producer: Producer, drill: Drill) -> int | None:
    """Every process up and one text through them; the fault's start (epoch ms)."""
    stack.start_simulator()
    sim.play(drill.scenario())
    stack.start_webhooks()
    stack.start_workers()
    _warm_up(producer)
    sim.reset()  # the scenario clock starts with the campaign
    if not drill.fault:
        return None
    started_ms = int(httpx.get(f"{stack.sim_url}/sim/carriers").json()["started_ms"])
    return started_ms + int(1000 * float(drill.fault.get("from_s", 0)))


def _resume(stack: Stack, breakers: Breakers, drill: Drill) -> int:
    """Lift the fault, then resume whatever the campaign's breakers hold (the held
    texts meet carriers that deliver); when it was resumed."""
    if drill.fault:
        lifted = drill.scenario(with_fault=False)
        httpx.post(f"{stack.sim_url}/sim/scenario", json=lifted).raise_for_status()
    resumed_ms = int(time.time() * 1000)
    for name in breakers.names():
        if name.endswith(f":{drill.campaign}") and breakers.status(name)["state"] != "closed":
            breakers.resume(name, who="drill", reason="drill over")
    return resumed_ms


class Feeder(threading.Thread):
    """Enqueues the campaign's texts at ``rate_per_s``, a tick's worth at a time."""

    def __init__(self, redis_url: str, jobs: list[dict[str, str]], rate_per_s: float) -> None:
        super().__init__(name="watch-drill-feeder", daemon=True)
        self.producer = Producer(redis.Redis.from_url(redis_url))
        self.jobs = jobs
        self.rate_per_s = rate_per_s
        self.ids: list[str] = []
        self.fed = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    @property
    def done(self) -> bool:
        return self.fed >= len(self.jobs) or self._halt.is_set()

    def run(self) -> None:
        try:
            began = time.monotonic()
            while not self._halt.is_set() and self.fed < len(self.jobs):
                due = min(len(self.jobs), int((time.monotonic() - began) * self.rate_per_s) + 1)
                if due > self.fed:
                    report = self.producer.enqueue_many(self.jobs[self.fed : due])
                    self.ids += [a.message_id for a in report.accepted]
                    self.fed = due
                self._halt.wait(FEED_TICK_S)
        except BaseException as exc:  # the drill's thread reports it
            self.error = exc
            raise

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        if self.error is not None:
            raise RuntimeError(f"the drill's feeder failed: {self.error}") from self.error


def _until_stopped(
    breakers: Breakers,
    producer: Producer,
    feeder: Feeder,
    drill: Drill,
    observe: Callable[[], None],
) -> None:
    """Until ``tail_s`` after Verizon's breaker stops its texts (and, when awaited, the
    watch paused it), or until every text was fed and is final or held (a breaker of
    another carrier's may hold some: run() resumes it)."""
    deadline = time.monotonic() + drill.timeout_s
    first_s: float | None = None
    while time.monotonic() < deadline:
        status = breakers.status(drill.breaker)
        now = time.monotonic()
        if first_s is None and status["state"] != "closed":
            first_s = now
        if first_s is not None:
            watched = status["by"] == WHO or now - first_s >= drill.await_watch_s
            if watched and now - first_s >= drill.tail_s:
                return
        elif feeder.done and _open(producer, drill.campaign, but_held=True) == 0:
            return
        if feeder.error is not None:
            return  # feeder.stop() raises it
        observe()
        time.sleep(POLL_S)
    raise TimeoutError(f"the watch drill did not finish within {drill.timeout_s:g} s")


def _stops(history: list[dict[str, str]], texts_to: Callable[[int], int]) -> list[Stop]:
    """The breaker's moves to open or paused, oldest first, with Verizon's texts to each."""
    moves = [(e, int(e.get("at_ms", 0))) for e in history if e.get("to") in STOPPED]
    return [Stop(e["to"], e.get("who", ""), e.get("why", ""), at, texts_to(at)) for e, at in moves]


def _stopped(history: list[dict[str, str]], resumed_ms: int) -> list[tuple[int, int]]:
    """The spans (start, end epoch ms) the breaker held Verizon's texts: from a move to
    open or paused until one to half_open (probes may go) or closed, or the drill's resume."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for entry in history:
        at = int(entry.get("at_ms", 0))
        if entry.get("to") in STOPPED:
            start = at if start is None else start
        elif start is not None:
            spans.append((start, at))
            start = None
    if start is not None:
        spans.append((start, resumed_ms))
    return spans


def _audit(breakers: Breakers, campaign: str) -> list[dict[str, str]]:
    """Every transition of the campaign's carrier breakers, oldest first."""
    names = [n for n in breakers.names() if n.endswith(f":{campaign}")]
    return sorted((e for n in names for e in breakers.history(n)), key=lambda e: e["id"])


def _accepted(sim: SimulatorClient, after_ms: int | None, until_ms: int | None) -> int:
    return int(sim.accepted(FAULTY, after_ms=after_ms, until_ms=until_ms)["accepted"])


def _sent_per_s(sim: SimulatorClient) -> float:
    times = [t for c in CARRIERS for t in sim.accepted(c, times=True).get("accepted_ms", [])]
    span_ms = max(times) - min(times) if len(times) > 1 else 0
    return round((len(times) - 1) * 1000 / span_ms, 1) if span_ms else 0.0


def _in_flight(producer: Producer, ids: list[str], stopped_ms: int) -> int:
    """Verizon texts claimed before its breaker stopped them and answered after: the
    provider may have accepted them a moment after the stop.

    A text is claimed ("sending", "claimed"), then passes the gates (the carrier
    breaker's among them: it caches nothing, cache_ms = 0), then its attempt is
    written ("sending", "attempt N via ...") and the request made. Admitted before
    the stop is therefore claimed before it; the claim, not the attempt, is the bound.
    """
    carriers = producer.store.fields(ids, ["carrier"])
    count = 0
    for msg_id, (carrier,) in zip(ids, carriers, strict=True):
        if carrier != FAULTY:
            continue
        claimed, previous = 0, ""
        for entry in producer.store.history(msg_id):
            to, at = entry.get("to"), int(entry.get("at", 0))
            if to == "sending" and previous != "sending":
                claimed = at  # the claim, not its attempt entry after the gates
            elif to == "sent" and at >= stopped_ms:
                count += claimed < stopped_ms
                break
            previous = to or ""
    return count


async def _learn_carriers(redis_url: str, jobs: list[dict[str, str]]) -> None:
    """Every number's carrier as an earlier lookup left it: the list texted before."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        resolver = CarrierResolver(client)
        for i in range(0, len(jobs), LEARN_AT_ONCE):
            chunk = jobs[i : i + LEARN_AT_ONCE]
            await asyncio.gather(*(resolver.remember(j["to"], carrier_of(j["to"])) for j in chunk))
    finally:
        await client.aclose()


def _warm_up(producer: Producer) -> None:
    """One text through the workers, so the campaign starts on a running stack."""
    (probe,) = producer.enqueue_many([{"to": number_for("att", 99_999), "body": "warm"}]).accepted
    _wait(lambda: (producer.store.get(probe.message_id) or {}).get("status") != "queued", 60)


def _open(producer: Producer, campaign: str, *, but_held: bool = False) -> int:
    """The campaign's texts not final yet, by its counts (one read, however many);
    ``but_held``: not those held (another carrier's breaker may hold them)."""
    counts = producer.store.stats().get(campaign, {})
    skip = FINAL_STATUSES | ({"held"} if but_held else set())
    return sum(n for status, n in counts.items() if status not in skip)


def _unfinished(producer: Producer, ids: list[str]) -> int:
    """Texts not (yet) in a final state, a missing record among them."""
    return sum(
        1 for (status,) in producer.store.fields(ids, ["status"]) if status not in FINAL_STATUSES
    )


def _wait(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the watch drill did not finish within {timeout_s:g} s")
        time.sleep(0.2)
