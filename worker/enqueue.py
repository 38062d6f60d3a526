"""The producer API: accept texts, record them and queue them, idempotently.

``enqueue(job)`` for one text, ``enqueue_many(jobs)`` for many: it validates
every job, then writes the valid ones in pipelined batches. Each text is one
call of ``lua/enqueue.lua``, which writes the record and the dramatiq message
together, so nothing is ever half accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import redis
from pydantic import ValidationError

from worker import keys, store, wire
from worker.models import SendJob, describe_validation_error

DEFAULT_BATCH_SIZE = 500
DEFAULT_QUEUE = "sendq"
# Long enough to cover any realistic retry of a producer script.
DEFAULT_IDEMPOTENCY_TTL_S = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Accepted:
    index: int
    message_id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    index: int
    reason: str


@dataclass(slots=True)
class EnqueueReport:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def queued(self) -> int:
        return sum(1 for a in self.accepted if not a.duplicate)

    @property
    def duplicates(self) -> int:
        return sum(1 for a in self.accepted if a.duplicate)


_HISTORY_TEMPLATE = '{"at":%d,"from":"accepted","to":"queued","why":"accepted"}'


def coerce(job: SendJob | Mapping[str, Any]) -> SendJob:
    if isinstance(job, SendJob):
        return job
    # Anything but a mapping (a number, a list, None) is refused by pydantic with
    # its reason, like any other bad job, instead of breaking the whole batch.
    return SendJob.model_validate(dict(job) if isinstance(job, Mapping) else job)


class Producer:
    def __init__(
        self,
        client: redis.Redis,
        *,
        queue: str = DEFAULT_QUEUE,
        ns: str = keys.DEFAULT_NAMESPACE,
        idempotency_ttl_s: int = DEFAULT_IDEMPOTENCY_TTL_S,
    ) -> None:
        self.store = store.Store(client, ns)
        self.queue = queue
        self.ns = ns
        self.idempotency_ttl_s = idempotency_ttl_s

    def enqueue(self, job: SendJob | Mapping[str, Any]) -> Accepted:
        """Accept one text; raises pydantic's ValidationError for a bad job."""
        valid = coerce(job)
        ((msg_id, new),) = self.store.accept([self._script_args(valid)])
        return Accepted(0, msg_id, duplicate=not new)

    def enqueue_many(
        self,
        jobs: Iterable[SendJob | Mapping[str, Any]],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_batch: Callable[[int], None] | None = None,
    ) -> EnqueueReport:
        """Accept many texts; invalid ones are reported and the valid ones still go in."""
        report = EnqueueReport()
        iterator = enumerate(jobs)
        while batch := list(islice(iterator, batch_size)):
            self._write_batch(batch, report)
            if on_batch:
                on_batch(len(batch))
        return report

    def _write_batch(
        self, batch: list[tuple[int, SendJob | Mapping[str, Any]]], report: EnqueueReport
    ) -> None:
        indexes = []
        calls = []
        for index, job in batch:
            try:
                valid = coerce(job)
            except ValidationError as exc:
                report.rejected.append(Rejected(index, describe_validation_error(exc)))
                continue
            calls.append(self._script_args(valid))
            indexes.append(index)
        for index, (msg_id, new) in zip(indexes, self.store.accept(calls), strict=True):
            report.accepted.append(Accepted(index, msg_id, duplicate=not new))

    def _script_args(self, job: SendJob) -> tuple[list[str], list[str]]:
        msg_id = store.new_message_id()
        queued = wire.fresh_message(msg_id, self.queue)
        now = store.now_ms()
        history = _HISTORY_TEMPLATE % now
        script_keys = [
            keys.idempotency(job.key or "", self.ns),
            keys.message(msg_id, self.ns),
            keys.history(msg_id, self.ns),
            keys.stats(self.ns),
            wire.queue_key(self.queue),
            wire.messages_key(self.queue),
            keys.carrier(job.to, self.ns),
        ]
        args = [
            msg_id,
            "1" if job.key else "0",
            str(now),
            job.campaign,
            queued.redis_message_id,
            queued.encoded,
            history,
            str(self.idempotency_ttl_s),
            *_record_fields(msg_id, job),
        ]
        return script_keys, args


def _record_fields(msg_id: str, job: SendJob) -> Iterator[str]:
    yield from ("id", msg_id, "to", job.to, "body", job.body, "campaign", job.campaign)
    yield from ("segments", str(job.segments))
    if job.key:
        yield from ("key", job.key)
    if job.send_before is not None:
        yield from ("send_before_ms", str(job.send_before_ms()))
    if job.metadata:
        yield from ("metadata", json.dumps(job.metadata, ensure_ascii=False))


def default_producer() -> Producer:
    """A producer on the configured (or embedded) Redis, made once per process."""
    from worker import wiring

    return wiring.root().producer()


def enqueue(job: SendJob | Mapping[str, Any]) -> Accepted:
    return default_producer().enqueue(job)


def enqueue_many(
    jobs: Iterable[SendJob | Mapping[str, Any]], *, batch_size: int = DEFAULT_BATCH_SIZE
) -> EnqueueReport:
    return default_producer().enqueue_many(jobs, batch_size=batch_size)
