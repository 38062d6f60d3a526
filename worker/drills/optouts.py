"""The opt-out drill: people reply STOP mid-stream, on real processes.

Workers, webhooks and the simulator run as processes on loopback (``Stack``);
the simulator's handsets reply STOP (or another opt-out keyword) to a share of
their first text, signed, through each provider's inbound route. Two
campaigns of one organisation:

1. campaign A sends ``rounds`` texts to each person, round after round, all
   queued at once: STOPs arrive while later rounds are queued and going out,
   so the send-time gate must catch them;
2. once A is done and every reply answered, campaign B sends to the same
   people: those who stopped must be refused at enqueue and never texted.

What counts is the simulator's inboxes: a text that reached a handset after
sendq's webhook answered its STOP (texts already in the provider's hands at
that moment are allowed) is a violation, and so is any campaign-B text to a
person who stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from worker.models import FINAL_STATUSES
from worker.producer import Campaigns, Producer
from worker.services import Stack
from worker.simulator.carriers import number_for
from worker.simulator.client import SimulatorClient

CARRIERS = ("att", "tmobile", "verizon")
ORG = "acme"
CAMPAIGN_A = "rally"
CAMPAIGN_B = "gotv"
STOP_REPLY_TEXT = "Acme: you're unsubscribed, no more texts. Reply START to rejoin."


@dataclass(frozen=True, slots=True)
class OptoutFigures:
    texts: int
    people: int
    stopped: int
    violations: int
    second_campaign_texts_to_stopped: int
    suppressed_at_send: int
    suppressed_at_enqueue: int
    confirmations: int
    lost: int
    doubled: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def scenario(stop_share: float, seed: int) -> dict[str, Any]:
    return {
        "dlr_delay_s": 0.2,
        "replies": {
            "rate": stop_share,
            "per": "handset",
            "delay_s": 0.5,
            "seed": seed,
            "kinds": {"stop": 1.0},
            "stop_confirmations": [STOP_REPLY_TEXT],
        },
    }


def environment(rate_per_s: int = 0) -> dict[str, str]:
    # A paced run, as a real campaign is: the STOPs to the first round come while
    # later rounds are still queued, which is what the send-time gate is for.
    paced = (
        {"SENDQ_LIMITS__PROVIDERS": json.dumps({"twilio": {"rate": rate_per_s, "burst": 10}})}
        if rate_per_s
        else {}
    )
    return {
        **paced,
        "SENDQ_DEFAULT_ORG": ORG,
        "SENDQ_CAMPAIGNS": json.dumps({CAMPAIGN_A: {"org": ORG}, CAMPAIGN_B: {"org": ORG}}),
        "SENDQ_ORGS": json.dumps({ORG: {"stop_reply": STOP_REPLY_TEXT}}),
        "SENDQ_LOG_LEVEL": "warning",
    }


def run(
    redis_url: str,
    workdir: Path,
    *,
    texts: int = 5000,
    rounds_a: int = 3,
    rounds_b: int = 2,
    stop_share: float = 0.10,
    seed: int = 13,
    rate_per_s: int = 300,
    timeout_s: float = 300.0,
) -> OptoutFigures:
    people = texts // (rounds_a + rounds_b)
    client = redis.Redis.from_url(redis_url)
    producer = Producer(client, campaigns=Campaigns(ORG, {CAMPAIGN_A: ORG, CAMPAIGN_B: ORG}))
    started = time.monotonic()
    stack = Stack(redis_url=redis_url, workdir=workdir, extra_env=environment(rate_per_s))
    with stack:
        stack.start_simulator()
        sim = SimulatorClient(stack.sim_url)
        sim.play(scenario(stop_share, seed))
        stack.start_webhooks()
        stack.start_workers()
        producer.enqueue_many(_jobs(CAMPAIGN_A, people, rounds_a))
        _wait(lambda: _final(producer, CAMPAIGN_A) >= people * rounds_a, timeout_s)
        sim.settle_replies(timeout_s=60)
        report_b = producer.enqueue_many(_jobs(CAMPAIGN_B, people, rounds_b))
        # The confirmations are texts too: wait for them and campaign B.
        _wait(lambda: _final(producer, CAMPAIGN_B) >= people * rounds_b, timeout_s)
        _wait(lambda: _unfinished(producer) == 0, 60)
        figures = _figures(sim, producer, people, rounds_a, rounds_b, report_b)
        sim.close()
    return _with_time(figures, time.monotonic() - started)


def _jobs(campaign: str, people: int, rounds: int) -> list[dict[str, str]]:
    return [
        {
            "to": number_for(CARRIERS[i % len(CARRIERS)], i),
            "body": f"{campaign} round {r + 1}, text for person {i}",
            "campaign": campaign,
        }
        for r in range(rounds)
        for i in range(people)
    ]


def _figures(
    sim: SimulatorClient,
    producer: Producer,
    people: int,
    rounds_a: int,
    rounds_b: int,
    report_b: Any,
) -> OptoutFigures:
    replies = sim.replies()
    stopped = [h for h in sim.handsets(replied=True) if h.get("opted_out_ms")]
    b_texts = sum(
        1 for h in stopped for t in h["texts"] if t["body"].startswith(f"{CAMPAIGN_B} round")
    )
    stats = producer.store.stats()
    report = sim.report()
    suppressed_a = stats.get(CAMPAIGN_A, {}).get("suppressed", 0)
    expected = people * (rounds_a + rounds_b)
    recorded = sum(n for c in stats.values() for n in c.values())
    return OptoutFigures(
        texts=expected,
        people=people,
        stopped=len(stopped),
        violations=int(replies.get("violations", 0)),
        second_campaign_texts_to_stopped=b_texts,
        suppressed_at_send=suppressed_a,
        suppressed_at_enqueue=len(report_b.suppressed),
        # Counted by body: a confirmation can reach the handset before the simulator
        # has read the webhook's answer to the STOP it confirms.
        confirmations=sum(1 for h in stopped for t in h["texts"] if STOP_REPLY_TEXT in t["body"]),
        # Every text recorded (the replies too) is in a final state, and none is missing.
        lost=_unfinished(producer) + max(0, expected - (recorded - _replies(producer))),
        doubled=int(report.get("doubled", 0)),
        seconds=0.0,
    )


def _replies(producer: Producer) -> int:
    """Records that are replies (STOP confirmations): they have no round in their body."""
    return sum(
        1
        for key in producer.store.client.scan_iter("sendq:msg:*", count=1000)
        if not key.endswith(b":h") and producer.store.client.hexists(key, "reply_kind")
    )


def _with_time(f: OptoutFigures, seconds: float) -> OptoutFigures:
    return OptoutFigures(**{**f.as_dict(), "seconds": round(seconds, 1)})


def _final(producer: Producer, campaign: str) -> int:
    counts = producer.store.stats().get(campaign, {})
    return sum(n for status, n in counts.items() if status in FINAL_STATUSES)


def _unfinished(producer: Producer) -> int:
    return sum(
        n
        for counts in producer.store.stats().values()
        for status, n in counts.items()
        if status not in FINAL_STATUSES
    )


def _wait(predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the drill did not finish within {timeout_s:g} s")
        time.sleep(0.2)


@dataclass(frozen=True, slots=True)
class LatencyFigures:
    stops: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def latency(redis_url: str, workdir: Path, *, stops: int = 300) -> LatencyFigures:
    """From the inbound POST of a STOP to the moment the send-time gate refuses the
    number: the gate reads the list itself (one HEXISTS, no cache), so that is when
    the opt-out is in the list. Measured per STOP, one after another, on the real
    webhook process."""
    from urllib.parse import urlencode

    import httpx

    from worker.optouts import OptoutList
    from worker.providers.twilio_webhooks import signature

    stack = Stack(redis_url=redis_url, workdir=workdir, extra_env=environment())
    listed = OptoutList(redis.Redis.from_url(redis_url))
    token = stack.env()["SENDQ_TWILIO_AUTH_TOKEN"]
    url = f"{stack.hook_url}/webhooks/twilio/inbound"
    samples_ms: list[float] = []
    with stack, httpx.Client(timeout=10) as http:
        stack.start_webhooks()
        for i in range(stops):
            person = number_for("att", 50_000 + i)
            form = {
                "MessageSid": f"SMlat{i}",
                "From": person,
                "To": "+12015550100",
                "Body": "STOP",
                "SmsStatus": "received",
                "NumMedia": "0",
            }
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature(url, form.items(), token),
            }
            started = time.perf_counter()
            http.post(url, content=urlencode(form), headers=headers).raise_for_status()
            while not listed.is_opted_out(ORG, person):
                time.sleep(0.001)
            samples_ms.append((time.perf_counter() - started) * 1000)
    samples_ms.sort()
    return LatencyFigures(
        stops=stops,
        p50_ms=round(samples_ms[len(samples_ms) // 2], 1),
        p99_ms=round(samples_ms[min(len(samples_ms) - 1, int(len(samples_ms) * 0.99))], 1),
        max_ms=round(samples_ms[-1], 1),
    )
