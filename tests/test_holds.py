"""The carrier breaker: a blocking carrier's texts are held safely, and released in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from tests import parts
from tests.conftest import AUTH_TOKEN
from worker import keys, wire
from worker.alerts import Alerter
from worker.breaker import FAILURE_WEIGHT, AsyncBreakers, Breakers, Policy
from worker.carriers import CarrierResolver
from worker.enqueue import Producer
from worker.models import Category
from worker.providers.twilio import TwilioProvider
from worker.retry import Backoff
from worker.sendpath import Pipeline, PipelineConfig
from worker.simulator.carriers import number_for
from worker.store import Store

SID = "AC" + "4" * 32
CARRIER_POLICY = Policy(
    window_s=60,
    min_calls=20,
    failure_rate=0.05,
    consecutive=5,
    cooldown_s=0.3,
    cooldown_max_s=5,
    probes=2,
    probe_timeout_s=1,
)


async def no_sleep(_: float) -> None:
    return None


class Alerts(Alerter):
    def __init__(self) -> None:
        super().__init__([])
        self.seen: list[tuple[str, str, str]] = []

    def announce(self, kind: str, name: str, transition: str, why: str = "", **extra: Any) -> None:
        self.seen.append((kind, name, transition))


@pytest.fixture
async def pipeline(sim, aclient: aioredis.Redis, ns, queue) -> AsyncIterator[Pipeline]:
    provider = TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim, timeout_s=2)
    lookup = httpx.AsyncClient(base_url=sim, auth=(SID, AUTH_TOKEN))
    config = PipelineConfig(
        queue=queue,
        public_url="http://127.0.0.1:9",
        routes={"default": ["twilio"]},
        numbers={"twilio": ["+12015550100"]},
        max_attempts=3,
        backoff=Backoff(1000, 10_000),
    )
    yield parts.pipeline(
        config,
        aclient,
        ns,
        {"twilio": provider},
        AsyncBreakers(aclient, "provider", Policy(), ns, cache_ms=0),
        carriers=CarrierResolver(aclient, ns=ns, lookup=lookup),
        carrier_breakers=AsyncBreakers(aclient, "carrier", CARRIER_POLICY, ns, cache_ms=0),
        alerter=Alerts(),
    )
    await provider.aclose()
    await lookup.aclose()


def enqueue(
    client: redis.Redis, ns: str, queue: str, carrier: str, n: int, **extra: Any
) -> list[str]:
    jobs = [
        {"to": number_for(carrier, i), "body": f"{carrier} #{i}", "campaign": "gotv", **extra}
        for i in range(n)
    ]
    return [a.message_id for a in Producer(client, ns=ns, queue=queue).enqueue_many(jobs).accepted]


def ops(client: redis.Redis, ns: str) -> Breakers:
    return Breakers(client, "carrier", CARRIER_POLICY, ns)


def sim_report(sim: str) -> dict[str, Any]:
    return httpx.get(f"{sim}/sim/report").json()  # type: ignore[no-any-return]


async def test_a_paused_carriers_texts_are_held_not_sent(pipeline, client, ns, queue, sim) -> None:
    ops(client, ns).pause("verizon:gotv", who="maria", reason="complaints")
    ids = enqueue(client, ns, queue, "verizon", 5)
    assert [await pipeline.deliver(i) for i in ids] == ["held"] * 5
    assert sim_report(sim)["requests"] == 0
    assert client.lrange(keys.hold("verizon:gotv", ns), 0, -1) == [i.encode() for i in ids]
    assert {Store(client, ns).get(i)["status"] for i in ids} == {"held"}  # type: ignore[index]


async def test_other_carriers_keep_flowing_while_one_is_paused(
    pipeline, client, ns, queue, sim
) -> None:
    ops(client, ns).pause("verizon:gotv", who="maria", reason="complaints")
    att = enqueue(client, ns, queue, "att", 5)
    assert [await pipeline.deliver(i) for i in att] == ["sent"] * 5


async def test_pausing_a_carrier_for_all_campaigns_holds_every_campaign(
    pipeline, client, ns, queue
) -> None:
    ops(client, ns).pause("verizon:*", who="maria", reason="carrier-wide block")
    ids = enqueue(client, ns, queue, "verizon", 2)
    assert [await pipeline.deliver(i) for i in ids] == ["held", "held"]


async def test_synchronous_blocks_open_the_carrier_breaker_and_hold_the_rest(
    pipeline, client, ns, queue, sim
) -> None:
    httpx.post(
        f"{sim}/sim/scenario",
        json={"rules": [{"carrier": "verizon", "error_code": "30007", "mode": "sync"}]},
    )
    ids = enqueue(client, ns, queue, "verizon", 12)
    outcomes = [await pipeline.deliver(i) for i in ids]
    assert outcomes == ["failed"] * 5 + ["held"] * 7
    assert ops(client, ns).status("verizon:gotv")["state"] == "open"
    assert ("carrier", "verizon:gotv", "closed>open") in pipeline.parts.alerter.seen
    # A carrier's block says nothing about the provider.
    assert Breakers(client, "provider", Policy(), ns).status("twilio")["state"] == "closed"


async def test_release_sends_held_texts_oldest_first(pipeline, aclient, client, ns, queue) -> None:
    ops(client, ns).pause("att:gotv", who="maria", reason="check")
    ids = enqueue(client, ns, queue, "att", 6)
    for i in ids:
        await pipeline.deliver(i)
    ops(client, ns).resume("att:gotv", who="maria")
    keeper = parts.keeper(aclient, queue, ns, probes=2)
    assert await keeper.tick() == 6
    queued = client.lrange(wire.queue_key(queue), 0, -1)
    # The enqueue put 6 on the queue first; the release appended 6 more in hold order.
    released = [
        __import__("dramatiq").Message.decode(client.hget(wire.messages_key(queue), q)).args[0]
        for q in queued[6:]
    ]
    assert released == ids
    assert {Store(client, ns).get(i)["status"] for i in ids} == {"queued"}  # type: ignore[index]
    assert client.llen(keys.hold("att:gotv", ns)) == 0


async def test_a_manual_pause_is_never_released_by_the_keeper(
    pipeline, aclient, client, ns, queue
) -> None:
    ops(client, ns).pause("att:gotv", who="maria", reason="check")
    ids = enqueue(client, ns, queue, "att", 3)
    for i in ids:
        await pipeline.deliver(i)
    keeper = parts.keeper(aclient, queue, ns, probes=2)
    import asyncio

    await asyncio.sleep(0.4)  # past any cool-down
    assert await keeper.tick() == 0
    assert client.llen(keys.hold("att:gotv", ns)) == 3


async def test_after_the_cool_down_probes_are_released_and_success_closes(
    pipeline, aclient, client, ns, queue, sim
) -> None:
    import asyncio

    httpx.post(
        f"{sim}/sim/scenario",
        json={
            "rules": [{"carrier": "verizon", "error_code": "30007", "mode": "sync", "until_s": 0.5}]
        },
    )
    httpx.post(f"{sim}/sim/reset")
    ids = enqueue(client, ns, queue, "verizon", 10)
    for i in ids:
        await pipeline.deliver(i)
    assert ops(client, ns).status("verizon:gotv")["state"] == "open"
    await asyncio.sleep(0.6)  # the filter lifts and the cool-down ends
    keeper = parts.keeper(aclient, queue, ns, probes=2)
    assert await keeper.tick() == 2
    probe_ids = ids[5:7]
    assert [await pipeline.deliver(i) for i in probe_ids] == ["sent", "sent"]
    # Accepted is not delivered: the breaker closes on the probes' receipts.
    feed = pipeline.parts.feed
    for i in probe_ids:
        record = Store(client, ns).get(i)
        assert record is not None
        await feed.receipt(record, "delivered", Category.OK, None)
    assert ops(client, ns).status("verizon:gotv")["state"] == "closed"
    assert await keeper.tick() == 3  # the rest follow


async def test_a_redelivered_message_for_a_held_text_changes_nothing(
    pipeline, client, ns, queue, sim
) -> None:
    ops(client, ns).pause("att:gotv", who="maria", reason="check")
    (msg_id,) = enqueue(client, ns, queue, "att", 1)
    assert await pipeline.deliver(msg_id) == "held"
    # The worker died before acking: dramatiq redelivers the same message.
    assert await pipeline.deliver(msg_id) == "skipped"
    assert client.llen(keys.hold("att:gotv", ns)) == 1
    assert sim_report(sim)["requests"] == 0


async def test_a_held_text_past_its_window_expires_when_released(
    pipeline, aclient, client, ns, queue, sim
) -> None:
    import asyncio

    ops(client, ns).pause("att:gotv", who="maria", reason="check")
    soon = datetime.now(UTC) + timedelta(seconds=0.3)
    (msg_id,) = enqueue(client, ns, queue, "att", 1, send_before=soon.isoformat())
    assert await pipeline.deliver(msg_id) == "held"
    await asyncio.sleep(0.4)
    ops(client, ns).resume("att:gotv", who="maria")
    # The keeper's tick expires it before any release; its message then finds it final.
    assert await parts.keeper(aclient, queue, ns, probes=2).tick() == 0
    assert Store(client, ns).get(msg_id)["status"] == "expired"  # type: ignore[index]
    assert await pipeline.deliver(msg_id) == "skipped"
    assert sim_report(sim)["requests"] == 0


async def test_a_text_whose_message_was_lost_gets_a_new_one(aclient, client, ns, queue) -> None:
    (msg_id,) = enqueue(client, ns, queue, "att", 1)
    client.delete(wire.queue_key(queue))  # dramatiq stranded its message
    keeper = parts.keeper(aclient, queue, ns, probes=2, orphan_after_s=1)
    assert await keeper.sweep() == 0  # not overdue yet
    client.hset(keys.message(msg_id, ns), "created_ms", 1)
    assert await keeper.sweep() == 1
    assert client.llen(wire.queue_key(queue)) == 1
    assert await keeper.sweep() == 0  # a message is waiting again: nothing is lost


async def test_the_sweeper_leaves_texts_alone_while_their_queue_has_messages(
    aclient, client, ns, queue
) -> None:
    ids = enqueue(client, ns, queue, "att", 2)
    for msg_id in ids:
        client.hset(keys.message(msg_id, ns), "created_ms", 1)
    keeper = parts.keeper(aclient, queue, ns, probes=2, orphan_after_s=1)
    assert await keeper.sweep() == 0


def released_ids(client: redis.Redis, queue: str, skip: int) -> list[str]:
    """The text ids of the messages on the queue after the first ``skip``."""
    import dramatiq

    queued = client.lrange(wire.queue_key(queue), skip, -1)
    raw = [client.hget(wire.messages_key(queue), q) for q in queued]
    return [dramatiq.Message.decode(m).args[0] for m in raw]  # type: ignore[arg-type]


async def test_a_carrier_wide_pause_keeps_campaign_holds_still_until_it_lifts(
    pipeline, aclient, client, ns, queue
) -> None:
    ops(client, ns).pause("verizon:*", who="maria", reason="carrier-wide block")
    ids = enqueue(client, ns, queue, "verizon", 4)
    assert [await pipeline.deliver(i) for i in ids] == ["held"] * 4
    hold = keys.hold("verizon:gotv", ns)
    before = [client.lrange(keys.history(i, ns), 0, -1) for i in ids]
    audit = client.xlen(keys.audit(ns))
    keeper = parts.keeper(aclient, queue, ns, probes=2)
    for _ in range(5):
        assert await keeper.tick() == 0
    assert client.lrange(hold, 0, -1) == [i.encode() for i in ids]
    assert {Store(client, ns).get(i)["status"] for i in ids} == {"held"}  # type: ignore[index]
    assert [client.lrange(keys.history(i, ns), 0, -1) for i in ids] == before
    assert client.xlen(keys.audit(ns)) == audit
    assert client.llen(wire.queue_key(queue)) == 4  # only the enqueue's own messages
    ops(client, ns).resume("verizon:*", who="maria")
    assert await keeper.tick() == 4
    assert released_ids(client, queue, 4) == ids


async def test_a_half_open_carrier_releases_only_probe_texts_from_its_hold(
    pipeline, aclient, client, ns, queue, sim
) -> None:
    from unittest import mock

    from worker import breaker as breaker_mod

    clock = [1_800_000_000_000]
    with mock.patch.object(breaker_mod, "now_ms", lambda: clock[0]):
        for _ in range(5):
            await pipeline.parts.carrier_breakers.record("att:gotv", FAILURE_WEIGHT, "30007")
        ids = enqueue(client, ns, queue, "att", 6)
        assert [await pipeline.deliver(i) for i in ids] == ["held"] * 6
        keeper = parts.keeper(aclient, queue, ns, probes=2)
        clock[0] += 300  # the cool-down is over
        assert [await keeper.tick() for _ in range(3)] == [2, 0, 0]
        # The probes go, and their receipts never come.
        assert [await pipeline.deliver(i) for i in ids[:2]] == ["sent", "sent"]
        assert ops(client, ns).status("att:gotv")["state"] == "half_open"
        assert await keeper.tick() == 0
        clock[0] += int(CARRIER_POLICY.probe_timeout_s * 1000)
        assert [await keeper.tick() for _ in range(3)] == [2, 0, 0]
        assert released_ids(client, queue, 6) == ids[:4]
        assert client.lrange(keys.hold("att:gotv", ns), 0, -1) == [i.encode() for i in ids[4:]]
