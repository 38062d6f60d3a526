"""The producer API, on the configured (or embedded) Redis.

    from worker.enqueue import enqueue, enqueue_many
    enqueue({"to": "+12015550123", "body": "hi", "campaign": "gotv", "key": "row-17"})
    report = enqueue_many(rows)   # .accepted, .rejected (index, reason), .conflicts

The producer itself, for code that brings its own Redis client, is
``worker.producer.Producer`` (also importable from here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from worker import wiring
from worker.models import SendJob
from worker.producer import (
    DEFAULT_BATCH_SIZE,
    Accepted,
    Conflict,
    EnqueueReport,
    Producer,
    Regions,
    Rejected,
    coerce,
)

__all__ = [
    "Accepted",
    "Conflict",
    "EnqueueReport",
    "Producer",
    "Regions",
    "Rejected",
    "coerce",
    "default_producer",
    "enqueue",
    "enqueue_many",
]


def default_producer() -> Producer:
    """A producer on the configured (or embedded) Redis, made once per process."""
    return wiring.root().producer()


def enqueue(job: SendJob | Mapping[str, Any]) -> Accepted:
    return default_producer().enqueue(job)


def enqueue_many(
    jobs: Iterable[SendJob | Mapping[str, Any]], *, batch_size: int = DEFAULT_BATCH_SIZE
) -> EnqueueReport:
    return default_producer().enqueue_many(jobs, batch_size=batch_size)
