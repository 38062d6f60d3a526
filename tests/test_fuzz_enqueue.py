"""Bad input through the real enqueue path: ``Producer.enqueue_many`` on a real Redis.

Every generated case is a batch of jobs written with one pipelined call, next to a text
queued before the fuzz began: each bad job is rejected with a reason naming its fields,
each good one is queued, and the text already queued never changes.
SENDQ_FUZZ_EXAMPLES sets the cases (10,000 by default; CI runs 3,000).
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from worker import keys, wire
from worker.enqueue import Producer
from worker.store import Store

EXAMPLES = int(os.environ.get("SENDQ_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FIELDS = ["to", "body", "campaign", "key", "send_before", "metadata", "colour"]
TEN_MB = 10 * 1024 * 1024

# One character from any of the 17 planes (assigned or not), control characters
# (C0, DEL, C1) and lone surrogates, which no UTF-8 encoder accepts.
any_plane = st.one_of(
    *(st.characters(min_codepoint=p << 16, max_codepoint=(p << 16) | 0xFFFF) for p in range(17))
)
controls = st.characters(categories=["Cc"])
surrogates = st.characters(categories=["Cs"])
plain = st.sampled_from("aZ9 é€{}[]\"'\\")
hard_text = st.text(alphabet=st.one_of(plain, any_plane, controls, surrogates), max_size=200)
numbers = st.one_of(
    st.sampled_from(
        ["+12015550123", "2015550123", "+1 (201) 555-0123", "+447700900123", "12", "+", ""]
    ),
    st.text(alphabet=st.sampled_from("0123456789+-() \x00٣"), max_size=20),
    st.integers(-(10**16), 10**16),
)
bodies = st.one_of(
    hard_text,
    st.sampled_from(["hi", "x" * 1600, "€" * 700, "x" * 1601, "😀" * 300, " ", "\u200b"]),
)
wrong_types = st.one_of(
    st.integers(),
    st.floats(allow_nan=True),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(hard_text, hard_text, max_size=3),
    st.binary(max_size=10),
)
# Missing fields come from the dictionary leaving them out. A key is never given a
# lone surrogate here: see test_a_key_with_a_lone_surrogate_is_rejected_not_raised.
fields = {
    "to": st.one_of(numbers, wrong_types),
    "body": st.one_of(bodies, wrong_types),
    "campaign": st.one_of(st.sampled_from(["gotv", "a" * 65, "", "x y"]), hard_text, wrong_types),
    "key": st.one_of(
        st.text(alphabet=st.one_of(plain, any_plane, controls), max_size=210), wrong_types
    ),
    "send_before": st.one_of(
        st.sampled_from(["2030-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "tomorrow", "9" * 30]),
        hard_text,
        wrong_types,
    ),
    "metadata": st.one_of(
        st.dictionaries(st.text(max_size=5), st.one_of(hard_text, st.integers()), max_size=3),
        st.just({"big": "x" * 5000}),
        wrong_types,
    ),
    "colour": wrong_types,
}
jobs = st.fixed_dictionaries({}, optional=fields)
GOOD = {"to": "+12015550124", "body": "good"}
REASON = re.compile(r"^([A-Za-z_]+)(\.[^:]*)?: \S")


@pytest.fixture
def producer(client: redis.Redis, ns: str, queue: str) -> Producer:
    return Producer(client, ns=ns, queue=queue)


def _snapshot(client: redis.Redis, ns: str, queue: str, msg_id: str) -> tuple[Any, ...]:
    """The queued text's record, history and campaign count, and the queue's length."""
    pipe = client.pipeline(transaction=False)
    pipe.dump(keys.message(msg_id, ns))
    pipe.dump(keys.history(msg_id, ns))
    pipe.hgetall(keys.stats(ns))
    pipe.llen(wire.queue_key(queue))
    *kept, stats, length = pipe.execute()
    return (*kept, {k: v for k, v in stats.items() if k.startswith(b"keep")}), length


def _queued_ids(client: redis.Redis, queue: str) -> list[bytes]:
    return list(client.lrange(wire.queue_key(queue), 0, -1))


@pytest.fixture
def kept(client: redis.Redis, ns: str, queue: str, producer: Producer) -> dict[str, Any]:
    """A text queued before the fuzz; each case checks it and the queue's length."""
    msg = producer.enqueue({"to": "+12015550123", "body": "already here", "campaign": "keep"})
    before, length = _snapshot(client, ns, queue, msg.message_id)
    return {"id": msg.message_id, "before": before, "length": length}


@FUZZ
@given(batch=st.lists(jobs, min_size=1, max_size=4))
def test_every_generated_job_is_queued_or_rejected_naming_its_fields_and_the_queue_is_untouched(
    client, ns, queue, producer, kept, batch
) -> None:
    report = producer.enqueue_many([*batch, GOOD])
    assert len(report.accepted) + len(report.rejected) == len(batch) + 1
    assert report.accepted[-1].index == len(batch)
    for rejected in report.rejected:
        job = batch[rejected.index]
        assert REASON.match(rejected.reason), rejected.reason
        # "field: why; field: why": each field named is one the job has, or a required one.
        named = [m.group(1) for m in map(REASON.match, rejected.reason.split("; ")) if m]
        assert all(f in job or f in ("to", "body") for f in named), rejected.reason
    after, length = _snapshot(client, ns, queue, kept["id"])
    expected, kept["length"] = kept["length"] + report.queued, length
    assert after == kept["before"]
    assert length == expected


def test_the_fuzzed_queue_holds_exactly_the_accepted_texts(client, ns, queue, producer) -> None:
    """The accounting the fuzz relies on: what enqueue_many reports is what is queued."""
    before = producer.enqueue({"to": "+12015550123", "body": "already here", "campaign": "keep"})
    report = producer.enqueue_many(
        [GOOD, {"to": "12"}, {"body": "\ud800", "to": "+12015550125"}, {**GOOD, "key": "k"}]
    )
    report_again = producer.enqueue_many([{**GOOD, "key": "k"}])
    assert (report.queued, len(report.rejected), report_again.duplicates) == (2, 2, 1)
    assert len(_queued_ids(client, queue)) == 3
    assert Store(client, ns).stats()["keep"] == {"queued": 1}
    assert client.hget(keys.message(before.message_id, ns), "body") == b"already here"


def test_a_10_mb_body_is_rejected_naming_the_body_and_its_size_and_nothing_queued_changes(
    client, ns, queue, producer
) -> None:
    size = TEN_MB
    kept = producer.enqueue({"to": "+12015550123", "body": "already here", "campaign": "keep"})
    before = _snapshot(client, ns, queue, kept.message_id)[0]
    huge = {"to": "+12015550124", "body": "x" * size, "campaign": "keep"}
    with pytest.raises(ValidationError) as one:
        producer.enqueue(huge)
    report = producer.enqueue_many([huge, GOOD])
    assert [r.index for r in report.rejected] == [0] and report.accepted[0].index == 1
    for reason in (str(one.value), report.rejected[0].reason):
        assert "body" in reason and f"{size}" in reason, reason[:300]
    assert len(report.rejected[0].reason) < 200  # the reason names the size, not the body
    assert _snapshot(client, ns, queue, kept.message_id)[0] == before
    assert len(_queued_ids(client, queue)) == 2


def test_a_key_with_a_lone_surrogate_is_rejected_not_raised(client, ns, queue, producer) -> None:
    report = producer.enqueue_many([{**GOOD, "key": "k\udfff"}, GOOD])
    assert [r.index for r in report.rejected] == [0]
    assert report.rejected[0].reason.startswith("key: ")


@pytest.mark.parametrize("job", [5, None, "to", ["to", "body"]])
def test_a_job_that_is_not_a_mapping_is_rejected_and_the_batch_still_goes_in(
    client, ns, queue, producer, job: Any
) -> None:
    report = producer.enqueue_many([job, GOOD])
    assert [r.index for r in report.rejected] == [0] and report.rejected[0].reason
    assert [a.index for a in report.accepted] == [1]
