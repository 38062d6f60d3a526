"""The producer: accept texts, record them and queue them, idempotently.

``Producer.enqueue(job)`` for one text, ``enqueue_many(jobs)`` for many: it validates
every job, then writes the valid ones in pipelined batches. Each text is one
call of ``lua/enqueue.lua``, which writes the record and the dramatiq message
together, so nothing is ever half accepted.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import redis
from pydantic import ValidationError

from worker import keys, store, wire
from worker.models import (
    DEFAULT_CAMPAIGN,
    REGION_CONTEXT,
    REPLY_FROM_FIELD,
    REPLY_KIND_FIELD,
    REPLY_PROVIDER_FIELD,
    REPLY_TO_FIELD,
    SendJob,
    describe_validation_error,
)
from worker.phone import DEFAULT_REGION

DEFAULT_BATCH_SIZE = 500
DEFAULT_QUEUE = "sendq"
# Long enough to cover any realistic retry of a producer script.
DEFAULT_IDEMPOTENCY_TTL_S = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Conflict:
    """A job whose key already names another text (another number or body).

    The first text is kept and this job queues nothing: a key maps to exactly
    one message. ``earlier_index`` is the index of the job in the same
    ``enqueue_many`` call that used the key first, None when the key came from
    an earlier call (or an earlier run of the same file).
    """

    key: str
    differs: tuple[str, ...]
    earlier_index: int | None


@dataclass(frozen=True, slots=True)
class Accepted:
    index: int
    message_id: str
    duplicate: bool
    # Set when the key was used for another text: message_id is that text's.
    conflict: Conflict | None = None
    # The recipient is on the organisation's opt-out list: recorded, never queued.
    suppressed: bool = False


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
        return sum(1 for a in self.accepted if not a.duplicate and not a.suppressed)

    @property
    def suppressed(self) -> list[Accepted]:
        """Texts to people on the opt-out list: each recorded ``suppressed``, none queued."""
        return [a for a in self.accepted if a.suppressed]

    @property
    def duplicates(self) -> int:
        """Jobs that were the same text again under a used key: nothing to report."""
        return sum(1 for a in self.accepted if a.duplicate and a.conflict is None)

    @property
    def conflicts(self) -> list[Accepted]:
        """Jobs whose key named another text: each was dropped and the first kept."""
        return [a for a in self.accepted if a.conflict is not None]


_HISTORY_TEMPLATE = '{"at":%d,"from":"accepted","to":"queued","why":"accepted"}'
_SUPPRESSED_TEMPLATE = (
    '{"at":%d,"from":"accepted","to":"suppressed","why":"opted out of organisation %s"}'
)


@dataclass(frozen=True, slots=True)
class Campaigns:
    """What the producer needs of each campaign's settings: its organisation (whose
    opt-out list is checked at enqueue) and its deadline."""

    default_org: str = "default"
    orgs: Mapping[str, str] = field(default_factory=dict)
    send_before_ms: Mapping[str, int] = field(default_factory=dict)

    def org(self, campaign: str) -> str:
        return self.orgs.get(campaign, self.default_org)

    def deadline_ms(self, job: SendJob) -> int | None:
        """The earlier of the text's own send_before and its campaign's."""
        own, campaign = job.send_before_ms(), self.send_before_ms.get(job.campaign)
        given = [t for t in (own, campaign) if t is not None]
        return min(given) if given else None


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply to an inbound text (a STOP's confirmation, a HELP answer): it goes
    through the provider and the number the person wrote to, and only once."""

    inbound_id: str
    kind: str
    provider: str
    sender: str


@dataclass(frozen=True, slots=True)
class Regions:
    """How a number without its country code is read: per campaign, else the default."""

    default: str = DEFAULT_REGION
    by_campaign: Mapping[str, str] = field(default_factory=dict)

    def of(self, job: object) -> str:
        campaign = job.get("campaign") if isinstance(job, Mapping) else None
        if not isinstance(campaign, str):
            campaign = DEFAULT_CAMPAIGN
        return self.by_campaign.get(campaign, self.default)


def coerce(job: SendJob | Mapping[str, Any], regions: Regions | None = None) -> SendJob:
    if isinstance(job, SendJob):
        return job
    region = (regions or Regions()).of(job)
    # Anything but a mapping (a number, a list, None) is refused by pydantic with
    # its reason, like any other bad job, instead of breaking the whole batch.
    return SendJob.model_validate(
        dict(job) if isinstance(job, Mapping) else job, context={REGION_CONTEXT: region}
    )


class Producer:
    def __init__(
        self,
        client: redis.Redis,
        *,
        queue: str = DEFAULT_QUEUE,
        ns: str = keys.DEFAULT_NAMESPACE,
        idempotency_ttl_s: int = DEFAULT_IDEMPOTENCY_TTL_S,
        regions: Regions | None = None,
        campaigns: Campaigns | None = None,
    ) -> None:
        self.store = store.Store(client, ns)
        self.queue = queue
        self.ns = ns
        self.idempotency_ttl_s = idempotency_ttl_s
        self.regions = regions or Regions()
        self.campaigns = campaigns or Campaigns()

    def enqueue(self, job: SendJob | Mapping[str, Any]) -> Accepted:
        """Accept one text; raises pydantic's ValidationError for a bad job.

        A key already used for another text is a conflict (``Accepted.conflict``):
        the first text is kept and nothing is queued.
        """
        valid = coerce(job, self.regions)
        run = _run_id()
        (answer,) = self.store.accept([self._script_args(valid, run, 0)])
        return _accepted(0, valid, answer, run)

    def enqueue_reply(self, job: SendJob, reply: Reply) -> Accepted:
        """Queue a reply; its key is the inbound text's, so a webhook posted twice
        replies once. A reply skips the opt-out check (a STOP's confirmation is
        caused by it; HELP is answered even after STOP)."""
        run = _run_id()
        args = self._script_args(job, run, 0, reply=reply)
        (answer,) = self.store.accept([args])
        return _accepted(0, job, answer, run)

    def enqueue_many(
        self,
        jobs: Iterable[SendJob | Mapping[str, Any]],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_batch: Callable[[int], None] | None = None,
    ) -> EnqueueReport:
        """Accept many texts; invalid ones are reported and the valid ones still go in."""
        report = EnqueueReport()
        # Written on each record, so a conflict can name the job of this call
        # that used its key first without the producer keeping every key.
        run = _run_id()
        iterator = enumerate(jobs)
        while batch := list(islice(iterator, batch_size)):
            self._write_batch(batch, report, run)
            if on_batch:
                on_batch(len(batch))
        return report

    def _write_batch(
        self,
        batch: list[tuple[int, SendJob | Mapping[str, Any]]],
        report: EnqueueReport,
        run: str,
    ) -> None:
        written: list[tuple[int, SendJob]] = []
        calls = []
        for index, job in batch:
            try:
                valid = coerce(job, self.regions)
            except ValidationError as exc:
                report.rejected.append(Rejected(index, describe_validation_error(exc)))
                continue
            calls.append(self._script_args(valid, run, index))
            written.append((index, valid))
        for (index, valid), answer in zip(written, self.store.accept(calls), strict=True):
            report.accepted.append(_accepted(index, valid, answer, run))

    def _script_args(
        self, job: SendJob, run: str, index: int, reply: Reply | None = None
    ) -> tuple[list[str], list[str]]:
        msg_id = store.new_message_id()
        queued = wire.fresh_message(msg_id, self.queue)
        now = store.now_ms()
        history = _HISTORY_TEMPLATE % now
        org = self.campaigns.org(job.campaign)
        deadline_ms = self.campaigns.deadline_ms(job)
        # A reply answers the person's own text (a STOP's confirmation, HELP): the
        # opt-out list does not stop it.
        is_reply = reply is not None
        script_keys = [
            keys.idempotency(job.key or "", self.ns),
            keys.message(msg_id, self.ns),
            keys.history(msg_id, self.ns),
            keys.stats(self.ns),
            wire.queue_key(self.queue),
            wire.messages_key(self.queue),
            keys.carrier(job.to, self.ns),
            keys.optouts(org, self.ns),
            keys.expiry(self.ns),
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
            "" if is_reply else job.to,
            "" if deadline_ms is None else str(deadline_ms),
            _SUPPRESSED_TEMPLATE % (now, org),
            *_record_fields(msg_id, job, deadline_ms),
            "org",
            org,
            # Only a keyed text can be named by a later conflict.
            *(("enqueue_run", run, "enqueue_index", str(index)) if job.key else ()),
            *(_reply_fields(reply) if reply is not None else ()),
        ]
        return script_keys, args


def _run_id() -> str:
    return secrets.token_hex(8)


def _accepted(
    index: int, job: SendJob, answer: tuple[str, bool, dict[str, str]], run: str
) -> Accepted:
    """The answer for one job: new, the same text again, or a conflict."""
    msg_id, new, held = answer
    if new:
        return Accepted(index, msg_id, duplicate=False, suppressed=held.get("suppressed") == "1")
    differs = tuple(name for name in ("to", "body") if held.get(name) != getattr(job, name))
    # No record under the key's message (never the case today): nothing to compare.
    if not differs or not (held.get("to") or held.get("body")):
        return Accepted(index, msg_id, duplicate=True)
    earlier = held.get("enqueue_index", "")
    same_run = held.get("enqueue_run") == run and earlier.isdigit()
    conflict = Conflict(job.key or "", differs, int(earlier) if same_run else None)
    return Accepted(index, msg_id, duplicate=True, conflict=conflict)


def _record_fields(msg_id: str, job: SendJob, deadline_ms: int | None) -> Iterator[str]:
    yield from ("id", msg_id, "to", job.to, "body", job.body, "campaign", job.campaign)
    yield from ("segments", str(job.segments))
    if job.key:
        yield from ("key", job.key)
    if deadline_ms is not None:
        yield from ("send_before_ms", str(deadline_ms))
    if job.metadata:
        yield from ("metadata", json.dumps(job.metadata, ensure_ascii=False))


def _reply_fields(reply: Reply) -> tuple[str, ...]:
    return (
        REPLY_TO_FIELD,
        reply.inbound_id,
        REPLY_KIND_FIELD,
        reply.kind,
        REPLY_PROVIDER_FIELD,
        reply.provider,
        REPLY_FROM_FIELD,
        reply.sender,
    )
