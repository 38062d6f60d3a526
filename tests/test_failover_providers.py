"""Failover between two different real providers, on real processes over loopback.

Twilio is the primary and refuses TCP connections (the simulator closes its
port); Telnyx is the secondary. The simulator's inboxes count what arrived.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import redis

from tests.test_e2e import counts, final, jobs, wait_until
from worker import keys
from worker.breaker import Breakers, Policy
from worker.enqueue import Producer
from worker.services import Stack, free_port

OUTAGE_S = 12.0
ROUTE_ENV = {
    "SENDQ_ROUTES": json.dumps({"default": ["twilio", "telnyx"]}),
    "SENDQ_PROVIDERS__TELNYX__NUMBERS": json.dumps(["+12015550150", "+12015550151"]),
    "SENDQ_PROVIDERS__TWILIO__TIMEOUT_S": "2",
    "SENDQ_BREAKERS__PROVIDER__CONSECUTIVE": "3",
    "SENDQ_BREAKERS__PROVIDER__COOLDOWN_S": "1",
    "SENDQ_BREAKERS__PROVIDER__COOLDOWN_MAX_S": "2",
}


def sim_report(stack: Stack) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"{stack.sim_url}/sim/report").json()


def test_an_outage_of_the_primary_moves_every_text_to_the_secondary_and_probes_bring_it_back(
    private_redis, tmp_path: Path
) -> None:
    url, _ = private_redis
    client = redis.Redis.from_url(url)
    producer = Producer(client)
    stack = Stack(
        redis_url=url,
        workdir=tmp_path / "logs",
        processes=1,
        threads=8,
        extra_env=ROUTE_ENV,
        provider_ports={"twilio": free_port()},
    )
    with stack:
        stack.start_simulator()
        stack.start_webhooks()
        refuse = {"rules": [{"provider": "twilio", "until_s": OUTAGE_S, "refuse": True}]}
        httpx.post(f"{stack.sim_url}/sim/scenario", json=refuse).raise_for_status()
        httpx.post(f"{stack.sim_url}/sim/reset").raise_for_status()
        producer.enqueue_many(jobs(200, "outage"))
        stack.start_workers()
        wait_until(lambda: final(producer, "outage") == 200, 60)
        during = sim_report(stack)
        assert during["t"] < OUTAGE_S, "the first batch must finish inside the outage"

        # After the outage, keep texts coming until probes close Twilio's breaker.
        wait_until(lambda: sim_report(stack)["t"] > OUTAGE_S, 30)
        breakers = Breakers(client, "provider", Policy(), keys.DEFAULT_NAMESPACE)
        batch = 0
        deadline = time.monotonic() + 60
        while breakers.status("twilio")["state"] != "closed":
            assert time.monotonic() < deadline, breakers.status("twilio")
            producer.enqueue_many(jobs(10, f"after{batch}"))
            batch += 1
            time.sleep(0.5)
        producer.enqueue_many(jobs(50, "healed"))
        wait_until(lambda: final(producer, "healed") == 50, 60)
        wait_until(lambda: all(final(producer, f"after{i}") == 10 for i in range(batch)), 60)
        after = sim_report(stack)

    # Every text of the outage went out through Telnyx, once.
    assert counts(producer, "outage") == {"delivered": 200}
    assert during["by_provider"]["twilio"]["accepted"] == 0
    assert during["by_provider"]["telnyx"]["accepted"] == 200
    # Twilio's breaker opened, then closed through probes; texts flow through it again.
    history = [e["to"] for e in reversed(breakers.history("twilio"))]
    assert "open" in history and "half_open" in history and history[-1] == "closed"
    assert after["by_provider"]["twilio"]["accepted"] > 0
    assert counts(producer, "healed") == {"delivered": 50}
    total = 200 + 10 * batch + 50
    assert (after["unique_texts"], after["doubled"]) == (total, 0)


def test_texts_sent_through_telnyx_learn_their_carrier_from_its_answer(
    private_redis, tmp_path: Path
) -> None:
    url, _ = private_redis
    client = redis.Redis.from_url(url)
    producer = Producer(client)
    env = {
        "SENDQ_ROUTES": json.dumps({"default": ["telnyx"]}),
        "SENDQ_CARRIERS__LOOKUP": "none",
    }
    texts = jobs(30, "telnyx")
    with Stack(redis_url=url, workdir=tmp_path / "logs", processes=1, extra_env=env).start():
        producer.enqueue_many(texts)
        wait_until(lambda: final(producer, "telnyx") == 30, 60)
    assert counts(producer, "telnyx") == {"delivered": 30}
    learned = {job["to"]: client.get(keys.carrier(job["to"])) for job in texts}
    # jobs() cycles att, tmobile, verizon; Telnyx named each in its answer.
    expected = {b"att", b"tmobile", b"verizon"}
    assert set(learned.values()) == expected


def test_a_429_storm_is_obeyed_every_text_arrives_once_and_no_retry_budget_is_spent(
    private_redis, tmp_path: Path
) -> None:
    url, _ = private_redis
    client = redis.Redis.from_url(url)
    producer = Producer(client)
    env = {"SENDQ_ROUTES": json.dumps({"default": ["telnyx"]})}
    storm = {"receipts": False, "providers": {"telnyx": {"account_mps": 20}}}
    with Stack(redis_url=url, workdir=tmp_path / "logs", processes=1, extra_env=env) as stack:
        stack.start_simulator()
        stack.start_webhooks()
        httpx.post(f"{stack.sim_url}/sim/scenario", json=storm).raise_for_status()
        producer.enqueue_many(jobs(150, "storm"))
        stack.start_workers()
        # Receipts are off, so "sent" is as far as a text goes.
        wait_until(lambda: counts(producer, "storm").get("sent", 0) == 150, 90)
        report = sim_report(stack)
    assert counts(producer, "storm") == {"sent": 150}
    telnyx = report["by_provider"]["telnyx"]
    assert telnyx["throttled_429"] > 0, "the storm never happened"
    # Obeyed: each 429's Retry-After is waited out, so a text meets few of them.
    assert telnyx["throttled_429"] < 150
    assert (report["unique_texts"], report["doubled"]) == (150, 0)
    records = [producer.store.get(a) or {} for a in _ids(client)]
    assert all(r.get("failures", "0") == "0" for r in records)


def _ids(client: redis.Redis) -> list[str]:
    return [
        k.decode().split(":")[2]
        for k in client.scan_iter(f"{keys.DEFAULT_NAMESPACE}:msg:*")
        if not k.decode().endswith(":h")
    ]
