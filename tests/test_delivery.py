"""The send pipeline against the simulator over loopback HTTP and a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from tests.conftest import AUTH_TOKEN
from worker import keys
from worker.breaker import AsyncBreakers, Policy
from worker.delivery import CRASH_RESEND_COUNTER, Pipeline, PipelineConfig, timed_queue
from worker.enqueue import Producer
from worker.providers.twilio import TwilioProvider
from worker.retry import Backoff
from worker.simulator.carriers import number_for
from worker.store import AsyncStore, Store

SID = "AC" + "1" * 32


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def pipeline(
    sim: str, aclient: aioredis.Redis, ns: str, queue: str
) -> AsyncIterator[Pipeline]:
    provider = TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim, timeout_s=2)
    config = PipelineConfig(
        queue=queue,
        public_url="http://127.0.0.1:9",  # receipts are not under test here
        routes={"default": ["twilio"]},
        numbers={"twilio": ["+12015550100", "+12015550101"]},
        max_attempts=3,
        backoff=Backoff(base_ms=1000, cap_ms=10_000),
    )
    breakers = AsyncBreakers(aclient, "provider", Policy(consecutive=100, min_calls=1000), ns)
    yield Pipeline(config, AsyncStore(aclient, ns), {"twilio": provider}, breakers, sleep=no_sleep)
    await provider.aclose()


def enqueue(client: redis.Redis, ns: str, queue: str, **job: Any) -> str:
    job.setdefault("to", number_for("att", 1))
    job.setdefault("body", "hello from a test")
    return Producer(client, ns=ns, queue=queue).enqueue(job).message_id


def scenario(sim: str, **data: Any) -> None:
    httpx.post(f"{sim}/sim/scenario", json=data).raise_for_status()


def report(sim: str) -> dict[str, Any]:
    return httpx.get(f"{sim}/sim/report").json()  # type: ignore[no-any-return]


async def test_a_text_is_sent_once_and_recorded_sent(pipeline, client, ns, queue, sim) -> None:
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "sent"
    record = Store(client, ns).get(msg_id)
    assert record is not None
    assert record["status"] == "sent" and record["provider"] == "twilio"
    assert record["provider_message_id"].startswith("SM")
    assert report(sim)["accepted"] == 1


async def test_a_redelivered_text_is_never_sent_twice(pipeline, client, ns, queue, sim) -> None:
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "sent"
    assert await pipeline.deliver(msg_id) == "skipped"
    assert report(sim)["accepted"] == 1


async def test_a_sticky_sender_is_used(pipeline, client, ns, queue, sim) -> None:
    to = number_for("verizon", 7)
    for i in range(3):
        await pipeline.deliver(enqueue(client, ns, queue, to=to, body=f"sticky {i}"))
    inbox = httpx.get(f"{sim}/sim/inbox/{to}").json()
    texts = inbox["texts"] if isinstance(inbox, dict) else inbox
    assert len({t["from"] for t in texts}) == 1


@pytest.mark.parametrize(
    ("code", "status"),
    [("30007", "failed"), ("21211", "failed"), ("21610", "suppressed"), ("30005", "failed")],
)
async def test_a_permanent_answer_ends_the_text_after_one_request(
    pipeline, client, ns, queue, sim, code: str, status: str
) -> None:
    scenario(sim, rules=[{"error_code": code, "mode": "sync"}])
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == status
    record = Store(client, ns).get(msg_id)
    assert record is not None and record["error_code"] == code
    assert report(sim)["requests"] == 1


async def test_a_provider_fault_is_retried_later_without_losing_the_text(
    pipeline, client, ns, queue, sim
) -> None:
    scenario(sim, rules=[{"http_status": 503}])
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "retry"
    record = Store(client, ns).get(msg_id)
    assert record is not None
    assert (record["status"], record["failures"], record["error_code"]) == ("queued", "1", "20503")
    # Quick retries inside the attempt, then one delayed redelivery queued for dramatiq.
    assert report(sim)["requests"] == 3
    assert client.llen(keys.dramatiq_queue(keys.dramatiq_delay_queue_name(queue))) == 1


async def test_exhausted_retries_end_the_text_dead_with_the_last_error(
    pipeline, client, ns, queue, sim
) -> None:
    scenario(sim, rules=[{"http_status": 500}])
    msg_id = enqueue(client, ns, queue)
    outcomes = []
    for _ in range(3):
        outcomes.append(await pipeline.deliver(msg_id))
        Store(client, ns).transition(msg_id, ["queued"], "queued", reason="test: skip the delay")
    assert outcomes == ["retry", "retry", "dead"]
    record = Store(client, ns).get(msg_id)
    assert (
        record is not None
        and record["status"] == "dead"
        and record["error_code"] in ("20500", "http_500")
    )


async def test_throttling_spends_no_retry_budget(pipeline, client, ns, queue, sim) -> None:
    scenario(sim, rules=[{"error_code": "20429", "mode": "sync"}])
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "retry"
    record = Store(client, ns).get(msg_id)
    assert record is not None and record["failures"] == "0"


async def test_a_text_past_its_window_expires_unsent(pipeline, client, ns, queue, sim) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    msg_id = enqueue(client, ns, queue, send_before=past)
    assert await pipeline.deliver(msg_id) == "expired"
    assert report(sim)["requests"] == 0


async def test_a_text_left_sending_by_a_dead_worker_is_taken_over_and_counted(
    pipeline, client, ns, queue, sim
) -> None:
    msg_id = enqueue(client, ns, queue)
    store = Store(client, ns)
    store.transition(
        msg_id, ["queued"], "sending", reason="worker died", fields={"lease_until_ms": 1}
    )
    assert await pipeline.deliver(msg_id) == "sent"
    assert store.counters()[CRASH_RESEND_COUNTER] == 1


async def test_a_text_another_worker_is_sending_waits_for_its_lease(
    pipeline, client, ns, queue, sim
) -> None:
    msg_id = enqueue(client, ns, queue)
    store = Store(client, ns)
    store.transition(msg_id, ["queued"], "sending", reason="busy", fields={"lease_until_ms": 2**50})
    assert await pipeline.deliver(msg_id) == "skipped"
    assert report(sim)["requests"] == 0
    assert client.llen(keys.dramatiq_queue(keys.dramatiq_delay_queue_name(queue))) == 1


@pytest.fixture
async def limited(pipeline: Pipeline, aclient: aioredis.Redis, ns: str) -> Pipeline:
    from worker.ratelimit import AsyncLimiter
    from worker.settings import LimitsSettings

    pipeline.config.limits = LimitsSettings(
        short_wait_ms=250,
        number_types={"slow": {"rate": 1}, "brisk": {"rate": 10}},
        numbers={"+12015550100": "slow", "+12015550101": "slow"},
        default_number_type="brisk",
    )
    pipeline.limiter = AsyncLimiter(aclient, ns)
    return pipeline


async def test_a_text_over_its_numbers_limit_waits_for_its_slot_without_spending_retries(
    limited, client, ns, queue, sim
) -> None:
    to = number_for("att", 3)
    first, second = (
        enqueue(client, ns, queue, to=to, body="a"),
        enqueue(client, ns, queue, to=to, body="b"),
    )
    assert await limited.deliver(first) == "sent"
    assert await limited.deliver(second) == "deferred"
    record = Store(client, ns).get(second)
    assert record is not None
    assert (record["status"], record.get("failures", "0")) == ("queued", "0")
    assert record["rl_held"].startswith("number:")
    # It waits on its own queue, not behind the backlog of the main one.
    timed = keys.dramatiq_delay_queue_name(timed_queue(queue))
    assert client.llen(keys.dramatiq_queue(timed)) == 1
    assert report(sim)["requests"] == 1


async def test_at_its_slot_a_deferred_text_goes_without_asking_the_held_limiter_again(
    limited, client, ns, queue, sim
) -> None:
    import asyncio

    to = number_for("att", 3)
    first, second = (
        enqueue(client, ns, queue, to=to, body="a"),
        enqueue(client, ns, queue, to=to, body="b"),
    )
    await limited.deliver(first)
    await limited.deliver(second)
    Store(client, ns).transition(second, ["queued"], "queued", reason="test")
    await asyncio.sleep(1.0)
    assert await limited.deliver(second) == "sent"
    record = Store(client, ns).get(second)
    assert record is not None and record["rl_held"] == ""


async def test_a_short_wait_is_slept_in_the_worker(limited, client, ns, queue, sim) -> None:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    limited.sleep = sleep
    to = number_for("tmobile", 4)  # a "brisk" number: 10/s, 100 ms apart
    limited.config.numbers = {"twilio": ["+12015550199"]}
    ids = [enqueue(client, ns, queue, to=to, body=f"brisk {i}") for i in range(3)]
    assert [await limited.deliver(i) for i in ids] == ["sent", "sent", "sent"]
    assert len(slept) == 2 and all(0.05 < s <= 0.2 for s in slept)
