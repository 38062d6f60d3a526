"""The quiet-hours drill: a backlog held overnight is released at the opening, through
the rate limiter, on real processes.

A campaign's quiet window is set to end a few seconds from now in its
recipients' zone (New York: the simulator's first area code is 212), on the
real clock: the window accepts seconds, so no clock needs faking. Every text
is enqueued inside the window and held; at the opening they go out through
one sending number limited to ``rate`` a second in bursts of ``burst``.

What counts is the simulator's inboxes: no text reached a handset inside the
window in the recipient's local time, and the busiest one-second window of
arrivals holds at most rate + burst texts (the held backlog did not stampede).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import redis

from worker.models import FINAL_STATUSES
from worker.producer import Producer
from worker.quiet import QuietPolicy, local_time_ok
from worker.services import Stack
from worker.simulator.carriers import number_for

CAMPAIGN = "night"
ZONE = ZoneInfo("America/New_York")
SENDER = "+12015550142"
CARRIERS = ("att", "tmobile", "verizon")


@dataclass(frozen=True, slots=True)
class QuietFigures:
    texts: int
    held_peak: int
    delivered: int
    delivered_in_quiet_hours: int
    first_after_opening_s: float
    busiest_1s: int
    limit_1s: int
    rate_per_s: float
    lost: int
    doubled: int

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def window_ending_in(seconds: float, now: datetime | None = None) -> tuple[str, float]:
    """A quiet window that began an hour ago and ends ``seconds`` from now in New
    York, and its end as epoch seconds (whole seconds: the window's precision)."""
    now = now or datetime.now(ZONE)
    end = (now + timedelta(seconds=seconds)).replace(microsecond=0)
    start = now - timedelta(hours=1)
    return f"{start:%H:%M:%S}-{end:%H:%M:%S}", end.timestamp()


def run(
    redis_url: str,
    workdir: Path,
    *,
    texts: int = 1000,
    rate: int = 50,
    burst: int = 2,
    opens_in_s: float = 15.0,
    timeout_s: float = 300.0,
) -> QuietFigures:
    window, opening_s = window_ending_in(opens_in_s)
    env = {
        "SENDQ_CAMPAIGNS": json.dumps(
            {
                CAMPAIGN: {
                    "quiet_hours": window,
                    "time_zone": "America/New_York",
                    "state_rules": False,
                }
            }
        ),
        "SENDQ_PROVIDERS__TWILIO__NUMBERS": json.dumps([SENDER]),
        "SENDQ_LIMITS__NUMBERS": json.dumps({SENDER: {"rate": rate, "burst": burst}}),
        "SENDQ_LOG_LEVEL": "warning",
    }
    people = [number_for(CARRIERS[i % 3], i) for i in range(texts)]
    producer = Producer(redis.Redis.from_url(redis_url))
    with Stack(redis_url=redis_url, workdir=workdir, extra_env=env) as stack:
        stack.start_simulator()
        httpx.post(f"{stack.sim_url}/sim/scenario", json={"dlr_delay_s": 0.1}).raise_for_status()
        stack.start_webhooks()
        stack.start_workers()
        # Workers take seconds to start: the backlog goes in once they are up,
        # so that it is held by them, not merely queued until the opening.
        _warm_up(producer)
        producer.enqueue_many(
            {"to": to, "body": f"night text {i}", "campaign": CAMPAIGN}
            for i, to in enumerate(people)
        )
        held_peak = _held_peak(producer, opening_s)
        _wait(lambda: _final(producer) >= texts, timeout_s)
        arrivals_ms = _arrivals_ms(stack.sim_url, people)
        report = httpx.get(f"{stack.sim_url}/sim/report").json()
    policy = QuietPolicy(window, state_rules=False, campaign_zone="America/New_York")
    inside = sum(1 for to, at in arrivals_ms if not local_time_ok(to, int(at), policy))
    times_s = sorted(at / 1000 for _, at in arrivals_ms)
    counts = producer.store.stats().get(CAMPAIGN, {})
    return QuietFigures(
        texts=texts,
        held_peak=held_peak,
        delivered=counts.get("delivered", 0),
        delivered_in_quiet_hours=inside,
        first_after_opening_s=round(times_s[0] - opening_s, 3) if times_s else -1.0,
        busiest_1s=_busiest(times_s),
        limit_1s=rate + burst,
        rate_per_s=round(_rate(times_s), 1),
        lost=texts - sum(n for s, n in counts.items() if s in FINAL_STATUSES),
        doubled=int(report.get("doubled", 0)),
    )


def _warm_up(producer: Producer) -> None:
    (probe,) = producer.enqueue_many([{"to": number_for("att", 9999), "body": "warm"}]).accepted
    _wait(lambda: _status(producer, probe.message_id) in FINAL_STATUSES, 60)


def _status(producer: Producer, msg_id: str) -> str:
    return (producer.store.get(msg_id) or {}).get("status", "")


def _held_peak(producer: Producer, opening_s: float) -> int:
    """The most texts held at once before the opening."""
    peak = 0
    while time.time() < opening_s:
        peak = max(peak, producer.store.stats().get(CAMPAIGN, {}).get("held", 0))
        time.sleep(0.2)
    return peak


def _arrivals_ms(sim_url: str, numbers: list[str]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    with httpx.Client(base_url=sim_url, timeout=10) as client:
        for number in numbers:
            for text in client.get(f"/sim/handsets/{number}").json()["texts"]:
                out.append((number, float(text["received_ms"])))
    return out


def _busiest(times_s: list[float]) -> int:
    busiest, j = 0, 0
    for i, start in enumerate(times_s):
        while j < len(times_s) and times_s[j] < start + 1.0:
            j += 1
        busiest = max(busiest, j - i)
    return busiest


def _rate(times_s: list[float]) -> float:
    span = times_s[-1] - times_s[0] if len(times_s) > 1 else 0.0
    return (len(times_s) - 1) / span if span else 0.0


def _final(producer: Producer) -> int:
    counts = producer.store.stats().get(CAMPAIGN, {})
    return sum(n for s, n in counts.items() if s in FINAL_STATUSES)


def _wait(predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the drill did not finish within {timeout_s:g} s")
        time.sleep(0.2)
