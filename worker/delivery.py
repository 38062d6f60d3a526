"""The send pipeline (DESIGN.md, "Flow"): claim, check, send, classify, record.

Steps that later issues fill in (carrier lookup, carrier breaker, rate-limit
reservation, provider failover) slot in between claim and send. The pipeline
knows no provider by name: it talks to ``Provider``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from worker import keys, store
from worker.enqueue import dramatiq_message
from worker.errors import ProviderError
from worker.models import Category, Status
from worker.providers.base import OutboundText, Provider, SendResult
from worker.providers.twilio import validity_s
from worker.retry import Backoff, quick_retrying
from worker.routing import sticky_sender

log = structlog.get_logger("sendq.delivery")

DEFAULT_LEASE_MS = 60_000
CRASH_RESEND_COUNTER = "crash_resends"

# Permanent outcomes: never retried, never failed over (DESIGN.md, promise 4).
FINAL_FOR: dict[Category, Status] = {
    Category.OPTED_OUT: Status.SUPPRESSED,
    Category.BAD_NUMBER: Status.FAILED,
    Category.CARRIER_BLOCK: Status.FAILED,
    Category.PERMANENT: Status.FAILED,
}


@dataclass(slots=True)
class PipelineConfig:
    queue: str
    public_url: str
    numbers: list[str]
    max_attempts: int
    backoff: Backoff
    lease_ms: int = DEFAULT_LEASE_MS


@dataclass(slots=True)
class Pipeline:
    config: PipelineConfig
    store: store.AsyncStore
    provider: Provider
    sleep: Callable[[float], Awaitable[None]] | None = None
    outcomes: dict[str, int] = field(default_factory=dict)

    async def deliver(self, msg_id: str) -> str:
        """Take one text as far as it can go now; returns what happened, for tests and logs."""
        structlog.contextvars.bind_contextvars(message_id=msg_id, provider=self.provider.name)
        try:
            record = await self._claim(msg_id)
            if record is None:
                return "skipped"
            structlog.contextvars.bind_contextvars(campaign=record.get("campaign"))
            if _expired(record):
                await self._finish(msg_id, Status.EXPIRED, "past send_before", {})
                return Status.EXPIRED.value
            result = await self._send(record)
            return await self._record(msg_id, record, result)
        finally:
            structlog.contextvars.unbind_contextvars("message_id", "provider", "campaign")

    async def _claim(self, msg_id: str) -> dict[str, str] | None:
        lease = {"lease_until_ms": store.now_ms() + self.config.lease_ms}
        claimed = await self.store.transition(
            msg_id, [Status.QUEUED], Status.SENDING, reason="claimed",
            fields=lease, return_record=True,
        )  # fmt: skip
        if claimed.ok:
            return claimed.record
        if claimed.missing:
            log.error("no record for a queued text; dropping the queue entry")
            return None
        if claimed.current == Status.SENDING:
            return await self._take_over(msg_id, lease)
        # Already sent or final: a redelivered duplicate; nothing to do.
        return None

    async def _take_over(self, msg_id: str, lease: dict[str, int]) -> dict[str, str] | None:
        """A text left ``sending`` by a worker that died mid-send."""
        lease_until = await self.store.client.hget(
            keys.message(msg_id, self.store.ns), "lease_until_ms"
        )
        remaining_ms = int(lease_until or 0) - store.now_ms()
        if remaining_ms > 0:
            # Its worker may still be sending: look again when the lease runs out.
            requeue = dramatiq_message(msg_id, self.config.queue, delay_ms=remaining_ms + 100)
            await self.store.transition(
                msg_id, [Status.SENDING], Status.SENDING, reason="waiting for lease",
                requeue=requeue,
            )  # fmt: skip
            return None
        taken = await self.store.transition(
            msg_id, [Status.SENDING], Status.SENDING,
            reason="lease expired: resending (possible double send)",
            fields=lease, return_record=True,
        )  # fmt: skip
        if taken.ok:
            await self.store.count(CRASH_RESEND_COUNTER)
            log.warning("taking over a text whose worker died mid-send")
        return taken.record if taken.ok else None

    async def _send(self, record: dict[str, str]) -> SendResult:
        retrying = quick_retrying(sleep=self.sleep)
        result: SendResult = await retrying(self._send_once, self._outbound(record))
        return result

    async def _send_once(self, text: OutboundText) -> SendResult:
        try:
            return await self.provider.send(text)
        except ProviderError as exc:
            # Converted at the transport boundary; here it is one more category.
            return SendResult(Category.TRANSIENT, error_code=type(exc).__name__, error=str(exc))

    def _outbound(self, record: dict[str, str]) -> OutboundText:
        msg_id = record["id"]
        send_before = record.get("send_before_ms")
        return OutboundText(
            message_id=msg_id,
            to=record["to"],
            sender=sticky_sender(record["to"], self.config.numbers),
            body=record["body"],
            status_callback_url=(
                f"{self.config.public_url}/webhooks/{self.provider.name}/status?mid={msg_id}"
            ),
            validity_s=validity_s(int(send_before) if send_before else None, store.now_ms()),
        )

    async def _record(self, msg_id: str, record: dict[str, str], result: SendResult) -> str:
        fields: dict[str, Any] = {
            "provider": self.provider.name,
            "error_code": result.error_code,
            "error": result.error,
        }
        if result.ok:
            fields["provider_message_id"] = result.provider_message_id
            await self._finish(msg_id, Status.SENT, "accepted by provider", fields)
            return Status.SENT.value
        if result.category in FINAL_FOR:
            status = FINAL_FOR[result.category]
            await self._finish(msg_id, status, f"{result.category}: {result.error_code}", fields)
            return status.value
        return await self._retry_later(msg_id, record, result, fields)

    async def _retry_later(
        self, msg_id: str, record: dict[str, str], result: SendResult, fields: dict[str, Any]
    ) -> str:
        # Throttling is the provider pacing us, not the text failing: it spends no budget.
        failures = int(record.get("failures") or 0)
        if result.category is not Category.THROTTLED:
            failures += 1
        fields["failures"] = failures
        if failures >= self.config.max_attempts:
            await self._finish(msg_id, Status.DEAD, f"retries exhausted: {result.category}", fields)
            return Status.DEAD.value
        delay_ms = self.config.backoff.delay_ms(max(1, failures))
        if result.retry_after_s is not None:
            delay_ms = max(delay_ms, int(result.retry_after_s * 1000))
        requeue = dramatiq_message(msg_id, self.config.queue, delay_ms=delay_ms)
        await self.store.transition(
            msg_id, [Status.SENDING], Status.QUEUED,
            reason=f"{result.category}: retry in {delay_ms} ms", fields=fields, requeue=requeue,
        )  # fmt: skip
        log.info("send will be retried", category=str(result.category), delay_ms=delay_ms,
                 error_code=result.error_code)  # fmt: skip
        return "retry"

    async def _finish(
        self, msg_id: str, status: Status, reason: str, fields: dict[str, Any]
    ) -> None:
        done = await self.store.transition(
            msg_id, [Status.SENDING], status, reason=reason, fields=fields
        )
        if not done.ok and status is Status.SENT:
            # A fast receipt may have finalised it already; keep the provider's id.
            await self.store.client.hset(
                keys.message(msg_id, self.store.ns),
                mapping={
                    "provider": str(fields["provider"]),
                    "provider_message_id": str(fields["provider_message_id"]),
                },
            )
        if status in (Status.FAILED, Status.DEAD, Status.SUPPRESSED, Status.EXPIRED):
            log.warning("text ended", status=status.value, reason=reason)


def _expired(record: dict[str, str]) -> bool:
    send_before = record.get("send_before_ms")
    return bool(send_before) and int(send_before or 0) < store.now_ms()
