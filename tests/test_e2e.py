"""End to end with real processes: workers, webhooks and the simulator on loopback."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import redis

from worker.enqueue import Producer
from worker.models import FINAL_STATUSES
from worker.services import Stack
from worker.simulator.carriers import number_for

CARRIERS = ("att", "tmobile", "verizon")


def jobs(n: int, tag: str) -> list[dict[str, str]]:
    return [
        {"to": number_for(CARRIERS[i % 3], i), "body": f"{tag} text #{i}", "campaign": tag}
        for i in range(n)
    ]


def wait_until(predicate, timeout_s: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def counts(producer: Producer, campaign: str) -> dict[str, int]:
    return producer.store.stats().get(campaign, {})


def final(producer: Producer, campaign: str) -> int:
    return sum(n for s, n in counts(producer, campaign).items() if s in FINAL_STATUSES)


def test_hundreds_of_texts_are_all_delivered_once(private_redis, tmp_path: Path) -> None:
    url, _ = private_redis
    producer = Producer(redis.Redis.from_url(url))
    with Stack(redis_url=url, workdir=tmp_path / "logs", processes=2, threads=8).start() as stack:
        report = producer.enqueue_many(jobs(300, "e2e"))
        assert report.queued == 300
        wait_until(lambda: final(producer, "e2e") == 300)
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    assert counts(producer, "e2e") == {"delivered": 300}
    assert sim["delivered_to_handsets"] == 300
    assert sim["doubled"] == 0


def test_sigterm_finishes_in_flight_sends_and_a_new_worker_takes_the_rest(
    private_redis, tmp_path: Path
) -> None:
    url, _ = private_redis
    producer = Producer(redis.Redis.from_url(url))
    stack = Stack(redis_url=url, workdir=tmp_path / "logs", processes=1, threads=8)
    with stack:
        stack.start_simulator()
        stack.start_webhooks()
        producer.enqueue_many(jobs(600, "term"))
        first = stack.start_workers("first")
        wait_until(lambda: counts(producer, "term").get("delivered", 0) > 50)
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        # Nothing is left mid-send by a clean shutdown.
        wait_until(lambda: counts(producer, "term").get("sending", 0) == 0, 10)
        stack.start_workers("second")
        wait_until(lambda: final(producer, "term") == 600)
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    assert counts(producer, "term") == {"delivered": 600}
    assert sim["doubled"] == 0 and sim["delivered_to_handsets"] == 600


def test_rate_limited_texts_are_all_delivered_once_and_never_throttled(
    private_redis, tmp_path: Path
) -> None:
    import json

    url, _ = private_redis
    producer = Producer(redis.Redis.from_url(url))
    sender = "+12015550177"
    limits = {
        "SENDQ_PROVIDERS__TWILIO__NUMBERS": json.dumps([sender]),
        "SENDQ_LIMITS__NUMBERS": json.dumps({sender: {"rate": 25, "burst": 1}}),
    }
    with Stack(redis_url=url, workdir=tmp_path / "logs", extra_env=limits) as stack:
        stack.start_simulator()
        stack.start_webhooks()
        httpx.post(f"{stack.sim_url}/sim/scenario", json={"number_mps": 26}).raise_for_status()
        producer.enqueue_many(jobs(150, "limited"))
        stack.start_workers()
        wait_until(lambda: final(producer, "limited") == 150)
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    assert counts(producer, "limited") == {"delivered": 150}
    assert (sim["delivered_to_handsets"], sim["doubled"], sim["throttled_429"]) == (150, 0, 0)
    # Deferrals spend no retry budget.
    assert all(
        (producer.store.get(a) or {}).get("failures", "0") == "0"
        for a in [
            k.decode().split(":")[2]
            for k in producer.store.client.scan_iter("sendq:msg:*")
            if not k.decode().endswith(":h")
        ]
    )


def test_a_saturated_carrier_does_not_starve_other_carriers_or_campaigns(
    private_redis, tmp_path: Path
) -> None:
    """Verizon's per-campaign limit is full with a backlog queued first; the rest still flows."""
    import json

    url, _ = private_redis
    producer = Producer(redis.Redis.from_url(url))
    rate_per_min, burst = 30, 5
    limits = {
        "SENDQ_LIMITS__CARRIERS": json.dumps(
            {"verizon": {"rate": rate_per_min, "period_s": 60, "burst": burst}}
        )
    }
    backlog = [
        {"to": number_for("verizon", i), "body": f"busy {i}", "campaign": "busy"}
        for i in range(200)
    ]
    others = [
        {"to": number_for(("att", "tmobile")[i % 2], i), "body": f"busy {i}", "campaign": "busy"}
        for i in range(90)
    ]
    other_campaign = [
        {"to": number_for("verizon", 500 + i), "body": f"other {i}", "campaign": "other"}
        for i in range(burst)
    ]
    held = [a.message_id for a in producer.enqueue_many(backlog).accepted]
    flowing = [a.message_id for a in producer.enqueue_many(others + other_campaign).accepted]
    with Stack(redis_url=url, workdir=tmp_path / "logs", extra_env=limits) as stack:
        stack.start_simulator()
        stack.start_webhooks()
        started = time.monotonic()
        stack.start_workers()
        wait_until(lambda: all(_status(producer, m) == "delivered" for m in flowing), 60)
        elapsed_s = time.monotonic() - started
        held_status = [_status(producer, m) for m in held]
        failures = [(producer.store.get(m) or {}).get("failures", "0") for m in held]
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    through = held_status.count("delivered") + held_status.count("sent")
    # The backlog went at its limit, no faster, and is waiting, not failing.
    assert through <= burst + rate_per_min * elapsed_s / 60 + 1
    assert set(held_status) <= {"queued", "sending", "sent", "delivered"}
    assert held_status.count("queued") >= 200 - through - 8
    assert set(failures) == {"0"}
    assert (sim["doubled"], sim["throttled_429"]) == (0, 0)


def _status(producer: Producer, msg_id: str) -> str:
    return (producer.store.get(msg_id) or {}).get("status", "")
