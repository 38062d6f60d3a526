"""Outcome: what the route's answer, a gate's verdict or a deferral does to the record.

Every change is one compare-and-set out of ``sending`` (``store.transition``);
a requeue or a hold is written atomically with it.
"""

from __future__ import annotations

from typing import Any

import structlog

from worker import store, wire
from worker.models import RECEIPT_DUE_FIELD, Category, Status
from worker.providers.base import SendResult
from worker.retry import full_jitter_ms
from worker.sendpath.config import PipelineConfig
from worker.sendpath.gates.base import Kind, Verdict
from worker.sendpath.parts import Parts
from worker.sendpath.reserve import SLOT_LEAD_MS
from worker.sendpath.route import NO_PROVIDER_CODE, Routed
from worker.sendpath.settle import Settler
from worker.sendpath.text import Text
from worker.store import Hold
from worker.verdicts import UNSETTLED, final_status

log = structlog.get_logger("sendq.delivery")

# Record fields counting a text's consecutive pacing waits (never its retry budget).
THROTTLES_FIELD = "throttles"
NO_PROVIDER_WAITS_FIELD = "no_provider_waits"
LOUD_ENDINGS = (Status.FAILED, Status.DEAD, Status.SUPPRESSED, Status.EXPIRED)


class Outcomes:
    def __init__(self, config: PipelineConfig, parts: Parts, settler: Settler) -> None:
        self.config = config
        self.parts = parts
        self.store = parts.store
        self.settler = settler

    async def verdict(self, text: Text, verdict: Verdict) -> str:
        """Carry out a gate's hold or end."""
        assert verdict.status is not None
        if verdict.kind is Kind.END:
            await self.finish(text, verdict.status, verdict.reason, {})
            return verdict.status.value
        requeue = None
        if verdict.until_ms is not None:
            delay_ms = max(1, verdict.until_ms - store.now_ms())
            requeue = wire.message(text.id, wire.timed_queue(self.config.queue), delay_ms=delay_ms)
        held = await self.store.transition(
            text.id,
            [Status.SENDING],
            Status.HELD,
            reason=verdict.reason,
            fields={**text.take_pending(), **verdict.fields},
            hold=Hold(verdict.hold_list) if verdict.hold_list else None,
            requeue=requeue,
            fence=text.lease,
        )
        if held.ok:
            log.info("text held", reason=verdict.reason)
        return Status.HELD.value

    async def defer(self, text: Text, routed: Routed) -> str:
        """Wait for a reserved slot as a delayed message: no retry spent, no error logged."""
        assert routed.defer is not None
        r = routed.defer
        wait_ms = max(1, r.wait_us // 1000)
        delay_ms = max(1, wait_ms - SLOT_LEAD_MS) if r.reserved else wait_ms
        fields = {
            **text.take_pending(),
            "rl_slot_ms": store.now_ms() + wait_ms if r.reserved else "",
            "rl_held": ",".join(r.held),
            # A deferral comes before its attempt's HTTP call: none is open.
            "attempt_open": "",
        }
        # Its own queue: back on the main one it would wait behind the whole backlog
        # and miss its slot.
        requeue = wire.message(text.id, wire.timed_queue(self.config.queue), delay_ms=delay_ms)
        await self.store.transition(
            text.id,
            [Status.SENDING],
            Status.QUEUED,
            reason=f"rate limit {r.binding}: slot in {delay_ms} ms",
            fields=fields,
            requeue=requeue,
            fence=text.lease,
        )
        return "deferred"

    async def record(self, text: Text, routed: Routed) -> str:
        result = routed.result
        assert result is not None
        fields = {**text.take_pending(), **_answer_fields(text, routed, result)}
        if result.ok:
            fields["provider_message_id"] = result.provider_message_id
            fields[f"a{text.attempt}:pmid"] = result.provider_message_id
            fields[RECEIPT_DUE_FIELD] = self.config.receipt_due_ms()
            await self.finish(text, Status.SENT, f"accepted by {routed.provider}", fields)
            return Status.SENT.value
        status = final_status(result.category)
        if status is not None:
            await self.finish(text, status, f"{result.category}: {result.error_code}", fields)
            return status.value
        if result.category in UNSETTLED:
            why = f"{result.category} answer from {routed.provider}: {result.error_code}"
            return await self.settler.wait_for_evidence(text, why, fields)
        return await self._retry_later(text, result, fields)

    async def _retry_later(self, text: Text, result: SendResult, fields: dict[str, Any]) -> str:
        failures = int(text.record.get("failures") or 0)
        delay_ms = self._pacing_delay_ms(text.record, result, fields)
        pacing = delay_ms is not None
        if delay_ms is None:
            failures += 1
            delay_ms = self.config.backoff.delay_ms(max(1, failures), self.parts.rng)
            if result.retry_after_s is not None:
                delay_ms = max(delay_ms, int(result.retry_after_s * 1000))
        fields["failures"] = failures
        if failures >= self.config.max_attempts:
            reason = f"retries exhausted: {result.category}"
            await self.finish(text, Status.DEAD, reason, fields)
            return Status.DEAD.value
        delay_ms = max(1, delay_ms)
        await self.store.transition(
            text.id,
            [Status.SENDING],
            Status.QUEUED,
            reason=f"{result.category}: retry in {delay_ms} ms",
            fields=fields,
            requeue=wire.message(text.id, self.config.queue, delay_ms=delay_ms),
            fence=text.lease,
        )
        # Pacing is routine (a backlog may bounce many times): never more than debug.
        (log.debug if pacing else log.info)(
            "send will be retried",
            category=str(result.category),
            delay_ms=delay_ms,
            error_code=result.error_code,
        )
        return "retry"

    def _pacing_delay_ms(
        self, record: dict[str, str], result: SendResult, fields: dict[str, Any]
    ) -> int | None:
        """The wait for throttling or no open provider, which spends no retry budget;
        None for an answer that is a failure of the text's attempt."""
        if result.category is Category.THROTTLED:
            throttles = _bump(record, fields, THROTTLES_FIELD)
            if result.retry_after_s is not None:
                return int(result.retry_after_s * 1000)
            # No Retry-After: back off, or a throttling provider is hammered forever.
            backoff = self.config.backoff
            return full_jitter_ms(backoff.base_ms, backoff.cap_ms, throttles, self.parts.rng)
        if result.error_code == NO_PROVIDER_CODE:
            waits = _bump(record, fields, NO_PROVIDER_WAITS_FIELD)
            if result.retry_after_s is not None:
                # The earliest breaker's cool-down end.
                return int(result.retry_after_s * 1000)
            return self.config.no_provider_backoff.delay_ms(waits, self.parts.rng)
        return None

    async def finish(self, text: Text, status: Status, reason: str, fields: dict[str, Any]) -> None:
        done = await self.store.transition(
            text.id, [Status.SENDING], status, reason=reason, fields=fields, fence=text.lease
        )
        if not done.ok and not done.stale and status is Status.SENT:
            # A fast receipt finalised it already; keep the provider's id for this attempt.
            pmid = str(fields["provider_message_id"] or "")
            await self.store.set_fields(
                text.id,
                {f"a{text.attempt}:pmid": pmid, "provider_message_id": pmid, "attempt_open": ""},
            )
        if status in LOUD_ENDINGS:
            log.warning("text ended", status=status.value, reason=reason)


def _answer_fields(text: Text, routed: Routed, result: SendResult) -> dict[str, Any]:
    record = text.record
    fields: dict[str, Any] = {
        "attempt_open": "",
        "provider": routed.provider or "",
        "error_code": result.error_code,
        "error": result.error,
        # A slot is spent once the text has been sent (or tried).
        "rl_slot_ms": "",
        "rl_held": "",
        "carrier": record.get("carrier") or "",
    }
    if routed.provider is not None:
        # A provider answered: the pacing waits it ends were consecutive no more.
        # Only counters already set are reset: most texts never had one.
        if record.get(NO_PROVIDER_WAITS_FIELD):
            fields[NO_PROVIDER_WAITS_FIELD] = 0
        if record.get(THROTTLES_FIELD) and result.category is not Category.THROTTLED:
            fields[THROTTLES_FIELD] = 0
    return fields


def _bump(record: dict[str, str], fields: dict[str, Any], counter: str) -> int:
    """Count one more consecutive wait of this kind in the record's ``counter`` field."""
    count = int(record.get(counter) or 0) + 1
    fields[counter] = count
    return count
