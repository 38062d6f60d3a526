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


def environment() -> dict[str, str]:
    return {
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
    timeout_s: float = 300.0,
) -> OptoutFigures:
    people = texts // (rounds_a + rounds_b)
    client = redis.Redis.from_url(redis_url)
    producer = Producer(client, campaigns=Campaigns(ORG, {CAMPAIGN_A: ORG, CAMPAIGN_B: ORG}))
    started = time.monotonic()
    stack = Stack(redis_url=redis_url, workdir=workdir, extra_env=environment())
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
        confirmations=int(replies.get("confirmations", 0)),
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
