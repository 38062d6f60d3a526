"""A dead worker's texts are found by their lease and sent on at once, not behind the backlog."""

from __future__ import annotations

import json

import redis
import redis.asyncio as aioredis

from worker import keys, wire
from worker.enqueue import Producer
from worker.leases import LEASE_REQUEUE_COUNTER, LeaseSweeper
from worker.simulator.carriers import number_for
from worker.store import Store, now_ms

LEASE_MS = 60_000


def sending(client: redis.Redis, ns: str, queue: str, lease_until_ms: int) -> str:
    msg_id = (
        Producer(client, ns=ns, queue=queue)
        .enqueue({"to": number_for("att", 1), "body": "hi"})
        .message_id
    )
    # The worker that took it died: its message is gone from the queue.
    client.delete(wire.queue_key(queue))
    Store(client, ns).transition(
        msg_id, ["queued"], "sending", reason="claimed", fields={"lease_until_ms": lease_until_ms}
    )
    return msg_id


def sweeper(aclient: aioredis.Redis, ns: str, queue: str) -> LeaseSweeper:
    return LeaseSweeper(aclient, queue=queue, lease_ms=LEASE_MS, ns=ns)


def timed_messages(client: redis.Redis, queue: str) -> list[str]:
    timed = wire.timed_queue(queue)
    ids = client.lrange(wire.queue_key(timed), 0, -1)
    bodies = [client.hget(wire.messages_key(timed), i) for i in ids]
    return [json.loads(b)["args"][0] for b in bodies if b is not None]


async def test_a_text_left_sending_past_its_lease_gets_a_message_on_the_timed_queue(
    client, aclient, ns, queue
) -> None:
    msg_id = sending(client, ns, queue, lease_until_ms=now_ms() - 1)
    assert await sweeper(aclient, ns, queue).sweep() == 1
    assert timed_messages(client, queue) == [msg_id]
    assert Store(client, ns).counters()[LEASE_REQUEUE_COUNTER] == 1
    # Not requeued again on the next tick: it is looked at again a lease later.
    assert await sweeper(aclient, ns, queue).sweep() == 0
    assert (client.zscore(keys.inflight(ns), msg_id) or 0) > now_ms() + LEASE_MS - 5_000


async def test_a_text_whose_lease_is_running_is_left_alone(client, aclient, ns, queue) -> None:
    sending(client, ns, queue, lease_until_ms=now_ms() + LEASE_MS)
    assert await sweeper(aclient, ns, queue).sweep() == 0
    assert timed_messages(client, queue) == []


async def test_a_text_that_ends_leaves_the_in_flight_set(client, aclient, ns, queue) -> None:
    msg_id = sending(client, ns, queue, lease_until_ms=now_ms() - 1)
    Store(client, ns).transition(msg_id, ["sending"], "sent", reason="provider accepted it")
    assert client.zscore(keys.inflight(ns), msg_id) is None
    assert await sweeper(aclient, ns, queue).sweep() == 0


async def test_a_text_taken_over_carries_its_new_lease(client, aclient, ns, queue) -> None:
    msg_id = sending(client, ns, queue, lease_until_ms=now_ms() - 1)
    new_lease = now_ms() + LEASE_MS
    Store(client, ns).transition(
        msg_id, ["sending"], "sending", reason="taken over", fields={"lease_until_ms": new_lease}
    )
    assert client.zscore(keys.inflight(ns), msg_id) == new_lease
    assert await sweeper(aclient, ns, queue).sweep() == 0


def test_a_dead_workers_text_is_taken_over_once_however_many_find_it(client, ns, queue) -> None:
    msg_id = sending(client, ns, queue, lease_until_ms=now_ms() - 1)
    store = Store(client, ns)
    new_lease = {"lease_until_ms": now_ms() + LEASE_MS}
    first = store.transition(msg_id, ["sending"], "sending", reason="taken over", fields=new_lease)
    second = store.transition(msg_id, ["sending"], "sending", reason="taken over", fields=new_lease)
    assert (first.ok, second.ok) == (True, False)
