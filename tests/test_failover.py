"""Failover between providers: a provider fault moves texts on; a text's own fate never does."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from tests import parts
from tests.conftest import AUTH_TOKEN
from worker.breaker import AsyncBreakers, Breakers, Policy
from worker.enqueue import Producer
from worker.providers.twilio import TwilioProvider
from worker.retry import Backoff
from worker.sendpath import Pipeline, PipelineConfig
from worker.simulator.carriers import number_for
from worker.simulator.config import SimulatorConfig
from worker.simulator.server import start_in_thread
from worker.store import Store

SID = "AC" + "3" * 32
POLICY = Policy(consecutive=3, min_calls=10, failure_rate=0.5, cooldown_s=0.3, probes=2)
# For the outage tests, which count what reached the primary before its breaker
# opened: no probe may go mid-test, however slowly a loaded machine sends.
STAYS_OPEN = dataclasses.replace(POLICY, cooldown_s=300.0)


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed


async def no_sleep(_: float) -> None:
    return None


def make_pipeline(
    aclient, ns, queue, primary_url: str, secondary_url: str, policy: Policy = POLICY
) -> Pipeline:
    providers = {
        "primary": TwilioProvider(
            account_sid=SID, auth_token=AUTH_TOKEN, base_url=primary_url, timeout_s=2
        ),
        "secondary": TwilioProvider(
            account_sid=SID, auth_token=AUTH_TOKEN, base_url=secondary_url, timeout_s=2
        ),
    }
    config = PipelineConfig(
        queue=queue,
        public_url="http://127.0.0.1:9",
        routes={"default": ["primary", "secondary"]},
        numbers={"primary": ["+12015550100"], "secondary": ["+12015550199"]},
        max_attempts=3,
        backoff=Backoff(base_ms=1000, cap_ms=10_000),
    )
    breakers = AsyncBreakers(aclient, "provider", policy, ns, cache_ms=0)
    return parts.pipeline(config, aclient, ns, providers, breakers)


@pytest.fixture
async def outage(sim, aclient: aioredis.Redis, ns, queue) -> AsyncIterator[Pipeline]:
    pipeline = make_pipeline(aclient, ns, queue, dead_url(), sim, STAYS_OPEN)
    yield pipeline
    for p in pipeline.parts.providers.values():
        await p.aclose()


def enqueue_many(client: redis.Redis, ns: str, queue: str, n: int, **extra) -> list[str]:
    jobs = [{"to": number_for("att", i), "body": f"failover #{i}", **extra} for i in range(n)]
    return [a.message_id for a in Producer(client, ns=ns, queue=queue).enqueue_many(jobs).accepted]


async def test_a_dead_primary_sends_everything_through_the_secondary(
    outage, client, ns, queue, sim
) -> None:
    ids = enqueue_many(client, ns, queue, 40)
    outcomes = [await outage.deliver(i) for i in ids]
    assert outcomes == ["sent"] * 40
    store = Store(client, ns)
    assert {store.get(i)["provider"] for i in ids} == {"secondary"}  # type: ignore[index]
    report = httpx.get(f"{sim}/sim/report").json()
    assert report["accepted"] == 40 and report["doubled"] == 0
    ops = Breakers(client, "provider", STAYS_OPEN, ns)
    assert ops.status("primary")["state"] == "open"
    # Only the texts before the breaker opened tried the dead provider.
    assert ops.history("primary")[-1]["to"] == "open"


async def test_texts_that_hit_the_dead_provider_before_its_breaker_opened_are_few(
    outage, client, ns, queue
) -> None:
    ids = enqueue_many(client, ns, queue, 30)
    for i in ids:
        await outage.deliver(i)
    # Each failure in the primary's window is one text that tried it first.
    hit_dead = Breakers(client, "provider", STAYS_OPEN, ns).status("primary")["window_failures"]
    assert hit_dead == STAYS_OPEN.consecutive


async def test_the_primary_closes_again_through_probes_when_it_recovers(
    sim, aclient, client, ns, queue
) -> None:
    import asyncio

    primary = start_in_thread(SimulatorConfig(port=0, auth_token=AUTH_TOKEN))
    port = primary.url.rsplit(":", 1)[1]
    pipeline = make_pipeline(aclient, ns, queue, primary.url, sim)
    ids = enqueue_many(client, ns, queue, 30)
    primary.stop()
    for i in ids[:10]:
        await pipeline.deliver(i)
    ops = Breakers(client, "provider", POLICY, ns)
    assert ops.status("primary")["state"] == "open"
    revived = start_in_thread(SimulatorConfig(port=int(port), auth_token=AUTH_TOKEN))
    try:
        await asyncio.sleep(0.4)  # the cool-down
        for i in ids[10:]:
            await pipeline.deliver(i)
        assert ops.status("primary")["state"] == "closed"
        transitions = [(h["from"], h["to"]) for h in reversed(ops.history("primary"))]
        assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
        providers = [Store(client, ns).get(i)["provider"] for i in ids[10:]]  # type: ignore[index]
        assert providers[-1] == "primary"
    finally:
        revived.stop()
        for p in pipeline.parts.providers.values():
            await p.aclose()


@pytest.mark.parametrize("code", ["30007", "21211", "21610"])
async def test_a_text_the_carrier_or_number_refuses_never_fails_over(
    sim, aclient, client, ns, queue, code
) -> None:
    pipeline = make_pipeline(aclient, ns, queue, sim, sim)
    httpx.post(f"{sim}/sim/scenario", json={"rules": [{"error_code": code, "mode": "sync"}]})
    (msg_id,) = enqueue_many(client, ns, queue, 1)
    assert await pipeline.deliver(msg_id) in ("failed", "suppressed")
    assert httpx.get(f"{sim}/sim/report").json()["requests"] == 1
    ops = Breakers(client, "provider", POLICY, ns)
    assert (
        ops.status("primary")["state"] == "closed"
    )  # a carrier's answer is not the provider's fault


async def test_a_manually_paused_provider_is_skipped_and_never_resumed_by_itself(
    outage, client, ns, queue
) -> None:
    ops = Breakers(client, "provider", POLICY, ns)
    ops.pause("secondary", who="maria", reason="contract ended")
    ids = enqueue_many(client, ns, queue, 5)
    outcomes = [await outage.deliver(i) for i in ids]
    # Primary is dead and secondary paused: texts wait, without spending their retry budget.
    assert set(outcomes) == {"retry"}
    assert {Store(client, ns).get(i)["failures"] for i in ids[POLICY.consecutive :]} == {"0"}  # type: ignore[index]
    assert ops.status("secondary")["state"] == "paused"
