"""A sent text whose final receipt never comes ends unconfirmed; a late receipt still counts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests import parts
from tests.conftest import AUTH_TOKEN
from worker import keys
from worker.overdue import OVERDUE_COUNTER, ReceiptTimeouts
from worker.producer import Producer
from worker.providers.twilio import TwilioProvider
from worker.retry import Backoff
from worker.sendpath import Pipeline, PipelineConfig
from worker.simulator.carriers import number_for
from worker.store import AsyncStore, Store, now_ms

SID = "AC" + "1" * 32
TIMEOUT_MS = 30_000


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
        receipt_timeout_ms=TIMEOUT_MS,
    )
    yield parts.pipeline(config, aclient, ns, {"twilio": provider})
    await provider.aclose()


async def sent_text(pipeline: Pipeline, client, ns: str, queue: str) -> str:
    msg_id = (
        Producer(client, ns=ns, queue=queue)
        .enqueue({"to": number_for("att", 21), "body": "hi"})
        .message_id
    )
    assert await pipeline.deliver(msg_id) == "sent"
    return msg_id


async def test_a_sent_text_with_no_final_receipt_ends_unconfirmed_with_the_reason(
    pipeline, aclient, client, ns, queue
) -> None:
    msg_id = await sent_text(pipeline, client, ns, queue)
    sweeper = ReceiptTimeouts(aclient, timeout_s=TIMEOUT_MS / 1000, ns=ns)
    assert await sweeper.sweep(now_ms()) == []  # not due yet
    (ended,) = await sweeper.sweep(now_ms() + TIMEOUT_MS + 1)
    assert ended["id"] == msg_id and ended["status"] == "unconfirmed"
    store = Store(client, ns)
    assert store.get(msg_id)["unconfirmed_because"] == "receipt_timeout"  # type: ignore[index]
    assert "no final receipt within 30 s" in store.history(msg_id)[-1]["why"]
    assert store.counters()[OVERDUE_COUNTER] == 1
    assert store.stats()["default"] == {"unconfirmed": 1}
    assert not client.zcard(keys.awaiting(ns))


async def test_a_receipt_that_comes_after_the_timeout_still_settles_the_text(
    pipeline, aclient, client, ns, queue
) -> None:
    msg_id = await sent_text(pipeline, client, ns, queue)
    await ReceiptTimeouts(aclient, timeout_s=30, ns=ns).sweep(now_ms() + TIMEOUT_MS + 1)
    record = Store(client, ns).get(msg_id)
    assert record is not None
    done = await AsyncStore(aclient, ns).apply_receipt(
        msg_id,
        provider="twilio",
        attempt=1,
        provider_message_id=record["provider_message_id"],
        status="delivered",
        reason="receipt from twilio",
        fields={},
    )
    assert done.applied
    history = [(h["from"], h["to"]) for h in Store(client, ns).history(msg_id)]
    assert history[-2:] == [("sent", "unconfirmed"), ("unconfirmed", "delivered")]


async def test_a_final_receipt_in_time_takes_the_text_off_the_overdue_watch(
    pipeline, aclient, client, ns, queue
) -> None:
    msg_id = await sent_text(pipeline, client, ns, queue)
    assert client.zscore(keys.awaiting(ns), msg_id) is not None
    record = Store(client, ns).get(msg_id)
    assert record is not None
    await AsyncStore(aclient, ns).apply_receipt(
        msg_id,
        provider="twilio",
        attempt=1,
        provider_message_id=record["provider_message_id"],
        status="delivered",
        reason="receipt",
        fields={},
    )
    assert client.zscore(keys.awaiting(ns), msg_id) is None
    assert await ReceiptTimeouts(aclient, timeout_s=30, ns=ns).sweep(now_ms() + 10**9) == []


async def test_an_empty_overdue_sweep_is_one_command(aclient, ns) -> None:
    before = (await aclient.info("commandstats")).get("cmdstat_zrangebyscore", {}).get("calls", 0)
    assert await ReceiptTimeouts(aclient, timeout_s=30, ns=ns).sweep(now_ms()) == []
    after = (await aclient.info("commandstats")).get("cmdstat_zrangebyscore", {}).get("calls", 0)
    assert after - before == 1


async def test_sent_texts_from_before_the_upgrade_get_a_due_time_and_end_unconfirmed(
    pipeline, aclient, client, ns, queue
) -> None:
    """A version without receipt timeouts left texts sent with no due time: the keepers'
    slow scan gives them one, so they too reach a final state."""
    old = await sent_text(pipeline, client, ns, queue)
    done = await sent_text(pipeline, client, ns, queue)
    client.zrem(keys.awaiting(ns), old, done)  # as the old version left them
    await AsyncStore(aclient, ns).transition(done, ["sent"], "delivered", reason="receipt")
    updated_ms = int(Store(client, ns).get(old)["updated_ms"])
    sweeper = ReceiptTimeouts(aclient, timeout_s=TIMEOUT_MS / 1000, ns=ns, scan_count=1)
    added, steps = 0, 0
    while True:  # one key a step: the cursor is kept across calls
        added += await sweeper.scan_step(now_ms())
        steps += 1
        if client.hget(keys.awaiting_scan(ns), "done_ms"):
            break
    assert added == 1 and steps >= 1
    assert client.zscore(keys.awaiting(ns), old) == updated_ms + TIMEOUT_MS
    assert client.zscore(keys.awaiting(ns), done) is None  # final: nothing to await
    (ended,) = await sweeper.sweep(updated_ms + TIMEOUT_MS + 1)
    assert (ended["id"], ended["status"]) == (old, "unconfirmed")


async def test_a_text_an_old_process_leaves_later_is_found_by_the_next_pass(
    pipeline, aclient, client, ns, queue
) -> None:
    """A rolling upgrade: old processes go on writing sent texts after a pass ended."""
    sweeper = ReceiptTimeouts(aclient, timeout_s=30, ns=ns, rescan_s=60)
    while not client.hget(keys.awaiting_scan(ns), "done_ms"):
        await sweeper.scan_step(now_ms())
    late = await sent_text(pipeline, client, ns, queue)
    client.zrem(keys.awaiting(ns), late)
    assert await sweeper.scan_step(now_ms()) == 0  # the pass just ended: not yet
    added = 0
    for _ in range(100):
        added += await sweeper.scan_step(now_ms() + 61_000)
        if added:
            break
    assert added == 1 and client.zscore(keys.awaiting(ns), late) is not None
