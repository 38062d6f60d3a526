"""Accepting texts and changing their state, on a real Redis."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import redis
import redis.asyncio as aioredis
from dramatiq import Message

from worker import wire
from worker.enqueue import Conflict, Producer
from worker.models import Status
from worker.store import DEFAULT_HISTORY_CAP, AsyncStore, Store

GOOD = "+12015550123"


def producer(client: redis.Redis, ns: str, queue: str) -> Producer:
    return Producer(client, ns=ns, queue=queue)


def test_an_accepted_text_is_recorded_and_queued_for_dramatiq(
    client: redis.Redis, ns: str, queue: str
) -> None:
    accepted = producer(client, ns, queue).enqueue({"to": "2015550123", "body": "hi"})
    record = Store(client, ns).get(accepted.message_id)
    assert record is not None
    assert (record["status"], record["to"], record["segments"]) == ("queued", GOOD, "1")
    (redis_id,) = client.lrange(wire.queue_key(queue), 0, -1)
    encoded = client.hget(wire.messages_key(queue), redis_id)
    message = Message.decode(encoded)
    assert message.actor_name == "send_text"
    assert message.args == (accepted.message_id,)


def test_the_same_key_returns_the_same_id_and_queues_once(
    client: redis.Redis, ns: str, queue: str
) -> None:
    p = producer(client, ns, queue)
    first = p.enqueue({"to": GOOD, "body": "hi", "key": "k-1"})
    again = p.enqueue({"to": GOOD, "body": "hi", "key": "k-1"})
    report = p.enqueue_many([{"to": GOOD, "body": "hi", "key": "k-1"}] * 3)
    assert again.message_id == first.message_id and again.duplicate
    assert {a.message_id for a in report.accepted} == {first.message_id}
    assert report.duplicates == 3
    assert client.llen(wire.queue_key(queue)) == 1


def test_a_used_key_with_another_body_is_a_conflict_naming_the_earlier_job(
    client: redis.Redis, ns: str, queue: str
) -> None:
    jobs = [
        {"to": GOOD, "body": "Polls close at 8", "key": "row-1"},
        {"to": "+12015550124", "body": "other", "key": "row-2"},
        {"to": GOOD, "body": "Polls close at 9", "key": "row-1"},
        {"to": "+12015550199", "body": "other", "key": "row-2"},
        {"to": GOOD, "body": "Polls close at 8", "key": "row-1"},
    ]
    report = producer(client, ns, queue).enqueue_many(jobs, batch_size=2)

    first = report.accepted[0].message_id
    assert [(a.index, a.conflict) for a in report.conflicts] == [
        (2, Conflict("row-1", ("body",), 0)),
        (3, Conflict("row-2", ("to",), 1)),
    ]
    assert report.conflicts[0].message_id == first
    assert (report.queued, report.duplicates) == (2, 1)  # the same text again is no conflict
    # The first is kept, and nothing else was queued.
    assert Store(client, ns).get(first)["body"] == "Polls close at 8"  # type: ignore[index]
    assert client.llen(wire.queue_key(queue)) == 2


def test_a_conflict_with_a_key_from_an_earlier_run_names_no_job(
    client: redis.Redis, ns: str, queue: str
) -> None:
    p = producer(client, ns, queue)
    p.enqueue_many([{"to": GOOD, "body": "first", "key": "k-old"}])

    report = p.enqueue_many([{"to": GOOD, "body": "second", "key": "k-old"}])
    single = p.enqueue({"to": "+12015550124", "body": "first", "key": "k-old"})

    assert [a.conflict for a in report.conflicts] == [Conflict("k-old", ("body",), None)]
    assert single.duplicate and single.conflict == Conflict("k-old", ("to",), None)
    assert client.llen(wire.queue_key(queue)) == 1


def test_concurrent_producers_with_one_key_make_one_message(
    client: redis.Redis, ns: str, queue: str
) -> None:
    p = producer(client, ns, queue)
    with ThreadPoolExecutor(8) as pool:
        ids = set(
            pool.map(
                lambda _: p.enqueue({"to": GOOD, "body": "x", "key": "race"}).message_id, range(40)
            )
        )
    assert len(ids) == 1
    assert client.llen(wire.queue_key(queue)) == 1


def test_a_batch_with_bad_jobs_still_accepts_the_good_ones(
    client: redis.Redis, ns: str, queue: str
) -> None:
    jobs = [
        {"to": GOOD, "body": "one"},
        {"to": "12", "body": "two"},
        {"to": GOOD, "body": ""},
        {"to": GOOD, "body": "four", "extra": 1},
        {"to": "2015550124", "body": "five"},
    ]
    report = producer(client, ns, queue).enqueue_many(jobs, batch_size=2)
    assert [a.index for a in report.accepted] == [0, 4]
    assert [(r.index, r.reason.split(":")[0]) for r in report.rejected] == [
        (1, "to"),
        (2, "body"),
        (3, "extra"),
    ]
    assert client.llen(wire.queue_key(queue)) == 2
    assert Store(client, ns).stats() == {"default": {"queued": 2}}


def test_stats_count_by_campaign_and_status(client: redis.Redis, ns: str, queue: str) -> None:
    p = producer(client, ns, queue)
    p.enqueue_many(
        [{"to": GOOD, "body": "a", "campaign": "gotv"}] * 3 + [{"to": GOOD, "body": "b"}]
    )
    msg = p.enqueue({"to": GOOD, "body": "c", "campaign": "gotv"})
    Store(client, ns).transition(msg.message_id, ["queued"], "sending", reason="test")
    assert Store(client, ns).stats() == {
        "gotv": {"queued": 3, "sending": 1},
        "default": {"queued": 1},
    }


async def test_two_workers_can_never_both_claim_one_message(
    client: redis.Redis, aclient: aioredis.Redis, ns: str, queue: str
) -> None:
    msg = producer(client, ns, queue).enqueue({"to": GOOD, "body": "race"})
    store = AsyncStore(aclient, ns)
    results = await asyncio.gather(
        *(
            store.transition(msg.message_id, [Status.QUEUED], Status.SENDING, reason="claim")
            for _ in range(50)
        )
    )
    assert sum(r.ok for r in results) == 1
    assert {r.current for r in results if not r.ok} == {"sending"}
    assert Store(client, ns).get(msg.message_id)["attempts"] == "1"  # type: ignore[index]


def test_a_final_state_is_never_undone(client: redis.Redis, ns: str, queue: str) -> None:
    store = Store(client, ns)
    msg = producer(client, ns, queue).enqueue({"to": GOOD, "body": "x"})
    assert store.transition(msg.message_id, ["queued"], "sending", reason="claim").ok
    assert store.transition(msg.message_id, ["sending", "sent"], "delivered", reason="receipt").ok
    late = store.transition(
        msg.message_id, ["sending", "sent"], "undelivered", reason="late receipt"
    )
    assert (late.ok, late.current) == (False, "delivered")
    assert store.get(msg.message_id)["status"] == "delivered"  # type: ignore[index]


def test_a_transition_on_an_unknown_message_says_so(client: redis.Redis, ns: str) -> None:
    assert Store(client, ns).transition("nope", ["queued"], "sending", reason="x").missing


def test_history_records_every_change_and_is_capped(
    client: redis.Redis, ns: str, queue: str
) -> None:
    store = Store(client, ns)
    msg = producer(client, ns, queue).enqueue({"to": GOOD, "body": "x"})
    for i in range(DEFAULT_HISTORY_CAP + 10):
        store.transition(
            msg.message_id,
            ["queued", "sending"],
            "sending" if i % 2 == 0 else "queued",
            reason=f"step {i}",
        )
    history = store.history(msg.message_id)
    assert len(history) == DEFAULT_HISTORY_CAP
    assert history[-1]["why"] == f"step {DEFAULT_HISTORY_CAP + 9}"
    assert {"at", "from", "to", "why"} <= history[-1].keys()


def test_the_record_keeps_key_metadata_and_validity(
    client: redis.Redis, ns: str, queue: str
) -> None:
    msg = producer(client, ns, queue).enqueue(
        {
            "to": GOOD,
            "body": "x",
            "key": "k",
            "metadata": {"first": "Ana"},
            "send_before": "2030-01-01T00:00:00Z",
        }
    )
    record = Store(client, ns).get(msg.message_id)
    assert record is not None
    assert record["key"] == "k"
    assert json.loads(record["metadata"]) == {"first": "Ana"}
    assert record["send_before_ms"] == "1893456000000"


def test_the_fast_message_encoding_is_what_dramatiq_decodes() -> None:
    from worker.wire import fresh_message
    from worker.wire import message as dramatiq_message

    fast = Message.decode(fresh_message("abc123", "sendq").encoded.encode())
    slow = Message.decode(dramatiq_message("abc123", "sendq").encoded.encode())
    assert (fast.queue_name, fast.actor_name, fast.args, fast.kwargs) == (
        slow.queue_name,
        slow.actor_name,
        slow.args,
        slow.kwargs,
    )
    assert fast.options == {"redis_message_id": "abc123"}


def test_the_us_fast_path_agrees_with_phonenumbers() -> None:
    import random

    import phonenumbers

    from worker.phone import _US_VALID

    rng = random.Random(7)
    for _ in range(20_000):
        n = "+1" + "".join(rng.choice("0123456789") for _ in range(10))
        parsed = phonenumbers.parse(n)
        slow = (
            phonenumbers.is_valid_number(parsed)
            and phonenumbers.region_code_for_number(parsed) == "US"
        )
        assert bool(_US_VALID.fullmatch(n[2:])) == slow, n


def test_numbers_without_a_country_code_are_read_in_the_campaigns_region(client, ns, queue) -> None:
    from worker.enqueue import Regions

    regions = Regions("MX", {"nj-gotv": "US"})
    producer = Producer(client, ns=ns, queue=queue, regions=regions)
    mx = producer.enqueue({"to": "55 1234 5678", "body": "hola", "campaign": "cdmx"})
    us = producer.enqueue({"to": "55 1234 5678", "body": "hi", "campaign": "nj-gotv"})
    store = Store(client, ns)
    assert store.get(mx.message_id)["to"] == "+525512345678"  # type: ignore[index]
    assert store.get(us.message_id)["to"] == "+15512345678"  # type: ignore[index]


def test_the_configured_region_reaches_the_producer(redis_url, monkeypatch) -> None:
    from worker.settings import load_settings
    from worker.wiring import Root

    settings = load_settings(
        redis_url=redis_url, default_region="MX", campaigns={"nj": {"default_region": "US"}}
    )
    producer = Root(settings).producer()
    assert producer.regions.of({"campaign": "cdmx"}) == "MX"
    assert producer.regions.of({"campaign": "nj"}) == "US"
