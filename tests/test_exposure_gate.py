"""The exposure gate on the send path, and the hold keeper letting held texts in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import httpx
import pytest
import redis
import redis.asyncio as aioredis

from tests import parts
from tests.conftest import AUTH_TOKEN
from worker import keys, wire
from worker.breaker import AsyncBreakers, Breakers, Policy
from worker.carriers import CarrierResolver
from worker.enqueue import Producer
from worker.expiry import ExpirySweeper
from worker.exposure import EXPOSURE_FIELD, AsyncExposure, ExposurePolicy, Release
from worker.holds import AsyncHolds
from worker.leases import LeaseSweeper, OrphanSweeper
from worker.maintenance import HoldKeeper
from worker.models import Category, Status
from worker.providers.base import SendResult
from worker.providers.twilio import TwilioProvider
from worker.ratelimit import Reservation
from worker.retry import Backoff
from worker.sendpath import Pipeline, PipelineConfig
from worker.sendpath.gates import hold
from worker.sendpath.gates.exposure import ExposureGate, ExposureSlots
from worker.sendpath.route import Routed
from worker.sendpath.text import Text
from worker.simulator.carriers import number_for
from worker.store import Store

SID = "AC" + "5" * 32
NAME = "verizon:gotv"
HOLD = "exposure:" + NAME


@pytest.fixture
async def provider(sim: str) -> AsyncIterator[TwilioProvider]:
    twilio = TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim, timeout_s=2)
    yield twilio
    await twilio.aclose()


@pytest.fixture
async def lookup(sim: str) -> AsyncIterator[httpx.AsyncClient]:
    client = httpx.AsyncClient(base_url=sim, auth=(SID, AUTH_TOKEN))
    yield client
    await client.aclose()


def pipeline_with(
    exposure: AsyncExposure,
    aclient: aioredis.Redis,
    ns: str,
    queue: str,
    provider: TwilioProvider,
    lookup: httpx.AsyncClient,
) -> Pipeline:
    config = PipelineConfig(
        queue=queue,
        public_url="http://127.0.0.1:9",
        routes={"default": ["twilio"]},
        numbers={"twilio": ["+12015550100"]},
        max_attempts=3,
        backoff=Backoff(1000, 10_000),
    )
    pipeline = parts.pipeline(
        config,
        aclient,
        ns,
        {"twilio": provider},
        carriers=CarrierResolver(aclient, ns=ns, lookup=lookup),
    )
    pipeline.gates.append(ExposureGate(exposure))  # after the carrier gate, as wired
    return pipeline


def keeper(aclient: aioredis.Redis, queue: str, ns: str, exposure: AsyncExposure) -> HoldKeeper:
    return HoldKeeper(
        AsyncHolds(aclient, queue, ns),
        AsyncBreakers(aclient, "carrier", Policy(), ns, cache_ms=0),
        LeaseSweeper(aclient, queue=queue, lease_ms=60_000, ns=ns),
        OrphanSweeper(aclient, queue=queue, orphan_after_s=60, ns=ns),
        expiry=ExpirySweeper(aclient, ns=ns),
        exposure=exposure,
    )


def enqueue(client: redis.Redis, ns: str, queue: str, n: int, **extra: Any) -> list[str]:
    jobs = [
        {"to": number_for("verizon", i), "body": f"verizon #{i}", "campaign": "gotv", **extra}
        for i in range(n)
    ]
    return [a.message_id for a in Producer(client, ns=ns, queue=queue).enqueue_many(jobs).accepted]


def released_ids(client: redis.Redis, queue: str, skip: int) -> list[str]:
    """The message ids queued after the first ``skip`` (the enqueue's own)."""
    queued = client.lrange(wire.queue_key(queue), skip, -1)
    return [
        dramatiq.Message.decode(client.hget(wire.messages_key(queue), q)).args[0] for q in queued
    ]


def held(client: redis.Redis, ns: str, name: str = HOLD) -> list[str]:
    return [i.decode() for i in client.lrange(keys.hold(name, ns), 0, -1)]


async def deliver_receipt(
    exposure: AsyncExposure, client: redis.Redis, ns: str, msg_id: str
) -> None:
    """What the webhook does with a "delivered" receipt for ``msg_id``."""
    record = Store(client, ns).get(msg_id)
    assert record is not None
    assert await exposure.release_record(msg_id, record, Release.DELIVERED)


def sim_requests(sim: str) -> int:
    return int(httpx.get(f"{sim}/sim/report").json()["requests"])


def commands_run(client: redis.Redis) -> int:
    """Commands the server has run, all clients together, INFO itself left out."""
    stats = client.info("commandstats")
    return sum(int(s["calls"]) for name, s in stats.items() if name != "cmdstat_info")


def text(msg_id: str, **record: str) -> Text:
    return Text(msg_id, {"to": number_for("verizon", 0), "campaign": "gotv", **record}, "lease")


async def test_with_the_limit_off_the_gate_and_the_slots_make_no_redis_call(
    aclient, client, ns
) -> None:
    off = AsyncExposure(aclient, ExposurePolicy(), ns)
    gate, slots = ExposureGate(off), ExposureSlots(off)
    on = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=1000), ns)
    texts = [text(f"m{i}", carrier="verizon") for i in range(50)]
    before = commands_run(client)
    for t in texts:
        assert (await gate.check(t)).kind == "go"
        await slots.stopped(t, hold("carrier verizon:gotv is open"))
        await slots.routed(t, Routed("twilio", SendResult(Category.TRANSIENT)))
    assert commands_run(client) - before == 0
    # The same, with the limit on: one acquire and one release a text.
    gate, slots = ExposureGate(on), ExposureSlots(on)
    before = commands_run(client)
    for t in texts:
        assert (await gate.check(t)).kind == "go"
        await slots.routed(t, Routed("twilio", SendResult(Category.TRANSIENT)))
    assert commands_run(client) - before >= 100


async def test_past_the_cap_texts_are_held_in_order_and_none_of_them_is_sent(
    aclient, client, ns, queue, sim, provider, lookup
) -> None:
    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=3), ns)
    pipeline = pipeline_with(exposure, aclient, ns, queue, provider, lookup)
    ids = enqueue(client, ns, queue, 6)
    assert [await pipeline.deliver(i) for i in ids] == ["sent"] * 3 + ["held"] * 3
    assert sim_requests(sim) == 3
    assert held(client, ns) == ids[3:]
    record = Store(client, ns).get(ids[3])
    assert record is not None
    assert (record["held_for"], record[EXPOSURE_FIELD]) == ("exposure", NAME)
    assert (
        "3 of 3 texts await a final receipt"
        in client.lrange(keys.history(ids[3], ns), -1, -1)[0].decode()
    )
    assert Store(client, ns).stats_and_reasons()["gotv"]["held:exposure"] == 3
    # The texts out say where their slot is to be given back.
    assert Store(client, ns).get(ids[0])[EXPOSURE_FIELD] == NAME  # type: ignore[index]


async def test_the_keeper_lets_in_the_oldest_held_texts_as_slots_free_and_no_more(
    aclient, client, ns, queue, sim, provider, lookup
) -> None:
    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=3), ns)
    pipeline = pipeline_with(exposure, aclient, ns, queue, provider, lookup)
    ids = enqueue(client, ns, queue, 7)
    for i in ids:
        await pipeline.deliver(i)
    chores = keeper(aclient, queue, ns, exposure)
    assert await chores.tick() == 0  # no room yet
    for i in ids[:2]:
        await deliver_receipt(exposure, client, ns, i)
    assert [await chores.tick() for _ in range(3)] == [2, 0, 0]
    assert released_ids(client, queue, 7) == ids[3:5]
    assert held(client, ns) == ids[5:]
    # Their slots were taken for them: at the gate they go, and nobody else does.
    assert [await pipeline.deliver(i) for i in ids[3:5]] == ["sent", "sent"]
    assert (await exposure.status(NAME)).outstanding == 3
    assert sim_requests(sim) == 5


async def test_keepers_of_several_workers_at_once_release_no_more_than_the_room(
    aclient, client, ns, queue, provider, lookup
) -> None:
    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=2), ns)
    pipeline = pipeline_with(exposure, aclient, ns, queue, provider, lookup)
    ids = enqueue(client, ns, queue, 12)
    for i in ids:
        await pipeline.deliver(i)
    await deliver_receipt(exposure, client, ns, ids[0])
    workers = [keeper(aclient, queue, ns, exposure) for _ in range(4)]
    assert sum(await asyncio.gather(*(w.tick() for w in workers))) == 1
    assert released_ids(client, queue, 12) == [ids[2]]


async def test_a_held_text_that_expired_is_dropped_and_takes_no_slot(
    aclient, client, ns, queue, provider, lookup
) -> None:
    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=1), ns)
    pipeline = pipeline_with(exposure, aclient, ns, queue, provider, lookup)
    (first,) = enqueue(client, ns, queue, 1)
    soon = datetime.now(UTC) + timedelta(seconds=0.3)
    (short,) = enqueue(client, ns, queue, 1, send_before=soon.isoformat(), key="short")
    (last,) = enqueue(client, ns, queue, 1, key="last")
    assert [await pipeline.deliver(i) for i in (first, short, last)] == ["sent", "held", "held"]
    await asyncio.sleep(0.4)
    await deliver_receipt(exposure, client, ns, first)
    assert await keeper(aclient, queue, ns, exposure).tick() == 1
    assert Store(client, ns).get(short)["status"] == "expired"  # type: ignore[index]
    assert released_ids(client, queue, 3) == [last]
    assert held(client, ns) == []


async def test_while_the_carrier_is_paused_texts_held_for_room_move_to_its_hold(
    aclient, client, ns, queue, provider, lookup
) -> None:
    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=1), ns)
    pipeline = pipeline_with(exposure, aclient, ns, queue, provider, lookup)
    ids = enqueue(client, ns, queue, 3)
    assert [await pipeline.deliver(i) for i in ids] == ["sent", "held", "held"]
    Breakers(client, "carrier", Policy(), ns).pause(NAME, who="maria", reason="complaints")
    assert await keeper(aclient, queue, ns, exposure).tick() == 2
    assert [await pipeline.deliver(i) for i in ids[1:]] == ["held", "held"]
    assert held(client, ns, NAME) == ids[1:]
    assert {Store(client, ns).get(i)["held_for"] for i in ids[1:]} == {"carrier"}  # type: ignore[index]


async def test_a_probe_goes_through_a_full_cap(aclient, ns) -> None:
    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=1), ns)
    assert (await ExposureGate(exposure).check(text("m1", carrier="verizon"))).kind == "go"
    assert (await ExposureGate(exposure).check(text("m2", carrier="verizon"))).kind == "hold"
    probing = ExposureGate(exposure, probe=lambda _: True)
    assert (await probing.check(text("m3", carrier="verizon"))).kind == "go"


async def test_a_text_another_gate_stops_gives_its_slot_back(aclient, ns) -> None:
    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=5), ns)
    slots = ExposureSlots(exposure)
    t = text("m1", carrier="verizon")
    await ExposureGate(exposure).check(t)
    await slots.stopped(t, hold("carrier verizon:gotv is open"))
    assert (await exposure.status(NAME)).outstanding == 0


async def test_the_limits_own_hold_gives_back_nothing(aclient, ns) -> None:
    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=1), ns)
    gate, slots = ExposureGate(exposure), ExposureSlots(exposure)
    first, second = text("m1", carrier="verizon"), text("m2", carrier="verizon")
    await gate.check(first)
    verdict = await gate.check(second)
    await slots.stopped(second, verdict)
    assert (await exposure.status(NAME)).outstanding == 1


@pytest.mark.parametrize(
    ("routed", "kept"),
    [
        (Routed("twilio", SendResult(Category.OK, provider_message_id="SM1")), True),
        (Routed("twilio", SendResult(Category.UNCERTAIN)), True),
        (Routed("twilio", SendResult(Category.AMBIGUOUS)), True),
        (Routed("twilio", None, stale=True), True),
        (Routed("twilio", None, defer=Reservation(2_000_000, True, "provider:twilio")), False),
        (Routed("twilio", SendResult(Category.TRANSIENT)), False),
        (Routed("twilio", SendResult(Category.THROTTLED)), False),
        (Routed("twilio", SendResult(Category.BAD_NUMBER)), False),
        (Routed("twilio", SendResult(Category.CARRIER_BLOCK)), False),
    ],
    ids=[
        "sent",
        "uncertain",
        "ambiguous",
        "stale",
        "deferred",
        "fault",
        "throttled",
        "bad",
        "block",
    ],
)
async def test_what_the_route_did_decides_whether_the_text_keeps_its_slot(
    aclient, ns, routed: Routed, kept: bool
) -> None:
    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=5), ns)
    t = text("m1", carrier="verizon")
    await ExposureGate(exposure).check(t)
    await ExposureSlots(exposure).routed(t, routed)
    assert (await exposure.status(NAME)).outstanding == (1 if kept else 0)


async def test_a_carriers_block_at_send_time_shrinks_the_cap(aclient, ns) -> None:
    policy = ExposurePolicy(max_unconfirmed=100, adaptive=True, start=10)
    exposure = AsyncExposure(aclient, policy, ns)
    t = text("m1", carrier="verizon")
    await ExposureGate(exposure).check(t)
    await ExposureSlots(exposure).routed(t, Routed("twilio", SendResult(Category.CARRIER_BLOCK)))
    assert (await exposure.status(NAME)).cap == 5


async def test_a_text_held_for_room_keeps_its_place_across_redeliveries(
    aclient, client, ns, queue, provider, lookup
) -> None:
    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=1), ns)
    pipeline = pipeline_with(exposure, aclient, ns, queue, provider, lookup)
    ids = enqueue(client, ns, queue, 2)
    assert [await pipeline.deliver(i) for i in ids] == ["sent", "held"]
    # A stray message for the held text: it is the keeper's to release, not the queue's.
    assert await pipeline.deliver(ids[1]) == "skipped"
    assert held(client, ns) == ids[1:]
    assert Store(client, ns).get(ids[1])["status"] == Status.HELD  # type: ignore[index]


async def test_texts_held_for_room_are_all_let_go_once_the_limit_is_turned_off(
    aclient, client, ns, queue, sim, provider, lookup
) -> None:
    """Review finding: with the limit off, nothing released the limit's hold list."""
    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=1), ns)
    pipeline = pipeline_with(exposure, aclient, ns, queue, provider, lookup)
    ids = enqueue(client, ns, queue, 3)
    assert [await pipeline.deliver(i) for i in ids] == ["sent", "held", "held"]
    off = AsyncExposure(aclient, ExposurePolicy(), ns)  # restarted without the setting
    assert await keeper(aclient, queue, ns, off).tick() == 2
    assert held(client, ns) == []
    assert released_ids(client, queue, 3) == ids[1:]


async def test_a_text_let_in_for_room_that_expires_while_queued_gives_its_slot_back(
    aclient, client, ns, queue, sim, provider, lookup
) -> None:
    """Review finding: the expiry sweep ended such a text with its slot still taken."""
    from datetime import UTC, datetime, timedelta

    exposure = AsyncExposure(aclient, ExposurePolicy(max_unconfirmed=1), ns)
    pipeline = pipeline_with(exposure, aclient, ns, queue, provider, lookup)
    (first,) = enqueue(client, ns, queue, 1)
    soon = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    (second,) = [
        a.message_id
        for a in Producer(client, ns=ns, queue=queue)
        .enqueue_many(
            [
                {
                    "to": number_for("verizon", 50),
                    "body": "b",
                    "campaign": "gotv",
                    "send_before": soon,
                }
            ]
        )
        .accepted
    ]
    assert [await pipeline.deliver(first), await pipeline.deliver(second)] == ["sent", "held"]
    await deliver_receipt(exposure, client, ns, first)
    chores = keeper(aclient, queue, ns, exposure)
    assert await chores.tick() == 1  # the second is let in for the freed slot, queued
    client.zadd(f"{ns}:expiry", {second: 1})  # and its deadline passes while it waits
    await chores.tick()
    assert Store(client, ns).get(second)["status"] == "expired"  # type: ignore[index]
    assert (await exposure.status(NAME)).outstanding == 0
