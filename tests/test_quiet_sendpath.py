"""Quiet hours on the send path: held until the window opens, then sent through the route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis.asyncio as aioredis

from tests import parts
from tests.conftest import AUTH_TOKEN
from worker import keys
from worker.producer import Producer
from worker.providers.twilio import TwilioProvider
from worker.quiet import QuietPolicy
from worker.retry import Backoff
from worker.sendpath import Pipeline, PipelineConfig
from worker.store import Store

SID = "AC" + "1" * 32
# A Chicago number (312): one zone, no state rule in the table for Illinois.
PERSON = "+13125550142"
CHICAGO = ZoneInfo("America/Chicago")


def window_ending_in(seconds: float) -> str:
    now = datetime.now(CHICAGO)
    start, end = now - timedelta(hours=1), now + timedelta(seconds=seconds)
    return f"{start:%H:%M:%S}-{end:%H:%M:%S}"


@pytest.fixture
async def pipeline(
    sim: str, aclient: aioredis.Redis, ns: str, queue: str
) -> AsyncIterator[Pipeline]:
    provider = TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim, timeout_s=2)
    config = PipelineConfig(
        queue=queue,
        public_url="http://127.0.0.1:9",
        routes={"default": ["twilio"]},
        numbers={"twilio": ["+12015550100"]},
        max_attempts=3,
        backoff=Backoff(base_ms=1000, cap_ms=10_000),
        quiet={"gotv": QuietPolicy(window_ending_in(2.0), state_rules=False)},
    )
    yield parts.pipeline(config, aclient, ns, {"twilio": provider})
    await provider.aclose()


async def test_a_text_in_quiet_hours_is_held_then_sent_when_its_window_opens(
    pipeline, client, ns, queue, sim
) -> None:
    msg_id = (
        Producer(client, ns=ns, queue=queue)
        .enqueue({"to": PERSON, "body": "polls open at 7", "campaign": "gotv"})
        .message_id
    )
    assert await pipeline.deliver(msg_id) == "held"
    record = Store(client, ns).get(msg_id)
    assert record is not None and record["held_for"] == "quiet_hours"
    assert "quiet hours" in Store(client, ns).history(msg_id)[-1]["why"]
    assert Store(client, ns).stats_and_reasons()["gotv"]["held:quiet_hours"] == 1
    assert httpx.get(f"{sim}/sim/inbox/{PERSON}").json()["texts"] == []
    await asyncio.sleep(2.2)  # the window opens
    client.hset(keys.message(msg_id, ns), "eta_ms", 0)  # and its timed message comes
    assert await pipeline.deliver(msg_id) == "sent"
    assert len(httpx.get(f"{sim}/sim/inbox/{PERSON}").json()["texts"]) == 1
    assert Store(client, ns).stats_and_reasons()["gotv"].get("held:quiet_hours", 0) == 0


async def test_a_carrier_held_texts_stray_message_does_not_take_it_off_hold(
    pipeline, client, ns, queue, sim
) -> None:
    from worker.breaker import Breakers, Policy

    Breakers(client, "carrier", Policy(), ns).pause("unknown:default", who="t", reason="test")
    msg_id = Producer(client, ns=ns, queue=queue).enqueue({"to": PERSON, "body": "x"}).message_id
    assert await pipeline.deliver(msg_id) == "held"
    assert await pipeline.deliver(msg_id) == "skipped"  # a redelivered duplicate
    assert Store(client, ns).get(msg_id)["status"] == "held"  # type: ignore[index]


async def test_a_quiet_hold_whose_timed_message_was_lost_is_swept_back_after_its_time(
    pipeline, aclient, client, ns, queue, sim
) -> None:
    from worker import wire

    msg_id = (
        Producer(client, ns=ns, queue=queue)
        .enqueue({"to": PERSON, "body": "polls open at 7", "campaign": "gotv"})
        .message_id
    )
    assert await pipeline.deliver(msg_id) == "held"
    for name in wire.queues_of(queue):  # dramatiq stranded its message
        client.delete(wire.queue_key(name))
    keeper = parts.keeper(aclient, queue, ns, orphan_after_s=1)
    assert await keeper.sweep() == 0  # not overdue yet
    client.hset(keys.message(msg_id, ns), "eta_ms", 1)  # long past its time
    assert await keeper.sweep() == 1
    await asyncio.sleep(2.2)  # the window opens
    client.hset(keys.message(msg_id, ns), "eta_ms", 0)
    assert await pipeline.deliver(msg_id) == "sent"
