"""The send pipeline (DESIGN.md, "Flow"): claim, check, route, send, classify, record.

The pipeline knows no provider by name: it walks the campaign's route of
``Provider``s. A provider fault (5xx, timeout, refused connection, auth
failure) counts against that provider's breaker and fails over to the next
provider on the route; an answer about the text itself (bad number, opted
out, carrier block) ends the text at once and never fails over: sending a
carrier-blocked text through another provider is snowshoeing.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from worker import keys, store
from worker.alerts import Alerter
from worker.breaker import FAILURE_WEIGHT, SUCCESS_WEIGHT, AsyncBreakers, Decision
from worker.carriers import UNKNOWN as UNKNOWN_CARRIER
from worker.carriers import CarrierResolver
from worker.enqueue import dramatiq_message
from worker.errors import ProviderError, ProviderTimeout
from worker.holds import ALL_CAMPAIGNS, breaker_name
from worker.logs import mask_text
from worker.models import Category, Status
from worker.providers.base import OutboundText, Provider, SendResult
from worker.ratelimit import AsyncLimiter, Reservation, limits_for
from worker.retry import (
    DEFAULT_QUICK_ATTEMPTS,
    DEFAULT_QUICK_BASE_S,
    DEFAULT_QUICK_CAP_S,
    Backoff,
    full_jitter_ms,
    quick_retrying,
    worth_retrying_now,
)
from worker.routing import sticky_sender
from worker.settings import LimitsSettings
from worker.store import Hold

log = structlog.get_logger("sendq.delivery")

DEFAULT_LEASE_MS = 60_000
DEFAULT_ROUTE = "default"
CRASH_RESEND_COUNTER = "crash_resends"
# A timed-out request may have reached the provider: failing over may double it.
TIMEOUT_FAILOVER_COUNTER = "failovers_after_timeout"
NO_PROVIDER_CODE = "no_provider"
# Every provider paused by hand: no breaker says when to look again, so each text
# backs off on its own (doubling from the base, capped), rather than a whole
# backlog bouncing through the queue every second until an operator resumes one.
DEFAULT_NO_PROVIDER_BASE_WAIT_MS = 1000
DEFAULT_NO_PROVIDER_MAX_WAIT_MS = 30_000
# Record fields counting a text's consecutive pacing waits (never its retry budget).
THROTTLES_FIELD = "throttles"
NO_PROVIDER_WAITS_FIELD = "no_provider_waits"
# A deferred text is redelivered this much before its slot and sleeps the rest,
# so it goes at its slot, not whenever dramatiq next looks at its delay queue.
SLOT_LEAD_MS = 250
# A text back later than this has lost its slot: it asks the limiters again.
SLOT_LATE_MS = 60

# Answers about the text itself: never retried, never failed over (promise 4).
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
    routes: Mapping[str, Sequence[str]]
    numbers: Mapping[str, Sequence[str]]
    max_attempts: int
    backoff: Backoff
    lease_ms: int = DEFAULT_LEASE_MS
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    # worker.retry_ambiguous: false ends an ambiguous answer "failed" at once.
    retry_ambiguous: bool = True
    no_provider_backoff: Backoff = field(
        default_factory=lambda: Backoff(
            base_ms=DEFAULT_NO_PROVIDER_BASE_WAIT_MS, cap_ms=DEFAULT_NO_PROVIDER_MAX_WAIT_MS
        )
    )

    def route(self, campaign: str) -> Sequence[str]:
        return self.routes.get(campaign) or self.routes[DEFAULT_ROUTE]


@dataclass(slots=True)
class Routed:
    """What the route produced: the provider that answered (if any) and its answer.

    ``defer`` instead: the text holds a rate-limit slot too far ahead to sleep for.
    """

    provider: str | None
    result: SendResult | None
    defer: Reservation | None = None


@dataclass(slots=True)
class Pipeline:
    config: PipelineConfig
    store: store.AsyncStore
    providers: Mapping[str, Provider]
    provider_breakers: AsyncBreakers
    limiter: AsyncLimiter | None = None
    carriers: CarrierResolver | None = None
    carrier_breakers: AsyncBreakers | None = None
    alerter: Alerter | None = None
    ambiguous_weight: float = 0.3
    sleep: Callable[[float], Awaitable[None]] | None = None
    # Jitter's source; tests inject a fixed one.
    rng: random.Random | None = None

    async def deliver(self, msg_id: str) -> str:
        """Take one text as far as it can go now; returns what happened, for tests and logs."""
        structlog.contextvars.bind_contextvars(message_id=msg_id)
        try:
            record = await self._claim(msg_id)
            if record is None:
                return "skipped"
            structlog.contextvars.bind_contextvars(campaign=record.get("campaign"))
            if _expired(record):
                await self._finish(msg_id, Status.EXPIRED, "past send_before", {})
                return Status.EXPIRED.value
            breaker = await self._carrier_gate(msg_id, record)
            if breaker is None:
                return Status.HELD.value
            routed = await self._route(record)
            if routed.defer is not None:
                return await self._defer(msg_id, routed)
            await self._feed_carrier_breaker(breaker, record, routed.result)
            return await self._record(msg_id, record, routed)
        finally:
            structlog.contextvars.unbind_contextvars(
                "message_id", "campaign", "provider", "carrier"
            )

    # -- carrier -----------------------------------------------------------

    async def _carrier_gate(self, msg_id: str, record: dict[str, str]) -> str | None:
        """The text's carrier breaker name, or None when it was held instead of sent."""
        carrier = record.get("carrier") or UNKNOWN_CARRIER
        if self.carriers is not None and carrier == UNKNOWN_CARRIER:
            carrier = await self.carriers.carrier_of(record["to"])
        record["carrier"] = carrier
        structlog.contextvars.bind_contextvars(carrier=carrier)
        name = breaker_name(carrier, record.get("campaign", DEFAULT_ROUTE))
        if self.carrier_breakers is None:
            return name
        decision = await self.carrier_breakers.admit(
            name, wider=breaker_name(carrier, ALL_CAMPAIGNS)
        )
        self._announce(self.carrier_breakers, name, decision)
        if decision.allowed:
            return name
        held = await self.store.transition(
            msg_id,
            [Status.SENDING],
            Status.HELD,
            reason=f"carrier {name} is {decision.state}",
            fields={"carrier": carrier},
            hold=Hold(name),
        )
        if held.ok:
            log.info("text held", breaker=name, state=decision.state.value)
        return None

    async def _feed_carrier_breaker(
        self, name: str, record: dict[str, str], result: SendResult | None
    ) -> None:
        if result is None:
            return
        if result.carrier and self.carriers is not None:
            await self.carriers.remember(record["to"], result.carrier)
        weight = self.carrier_weight(result.category)
        if weight is None or self.carrier_breakers is None:
            return
        decision = await self.carrier_breakers.record(name, weight, result.error_code or "")
        self._announce(self.carrier_breakers, name, decision, result.error_code)

    def carrier_weight(self, category: Category) -> int | None:
        """How a result counts against its carrier; None: it says nothing about the carrier.

        A provider's "accepted" is not the carrier's: only receipts count successes.
        """
        if category is Category.CARRIER_BLOCK:
            return FAILURE_WEIGHT
        if category is Category.AMBIGUOUS:
            return int(self.ambiguous_weight * FAILURE_WEIGHT)
        return None

    def _announce(
        self, breakers: AsyncBreakers, name: str, decision: Decision, code: str | None = None
    ) -> None:
        if not decision.transition or self.alerter is None:
            return
        why = decision.why or (f"last error {code}" if code else "")
        self.alerter.announce(breakers.kind, name, decision.transition, why=why)

    # -- claim -------------------------------------------------------------

    async def _claim(self, msg_id: str) -> dict[str, str] | None:
        lease = {"lease_until_ms": store.now_ms() + self.config.lease_ms}
        claimed = await self.store.transition(
            msg_id,
            [Status.QUEUED],
            Status.SENDING,
            reason="claimed",
            fields=lease,
            return_record=True,
        )
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
            # Its worker may still be sending: look again when the lease runs out,
            # on the timed queue: back on the main one it would wait behind the backlog.
            requeue = dramatiq_message(
                msg_id, timed_queue(self.config.queue), delay_ms=remaining_ms + 100
            )
            await self.store.transition(
                msg_id,
                [Status.SENDING],
                Status.SENDING,
                reason="waiting for lease",
                requeue=requeue,
            )
            return None
        taken = await self.store.transition(
            msg_id,
            [Status.SENDING],
            Status.SENDING,
            reason="lease expired: resending (possible double send)",
            fields=lease,
            return_record=True,
        )
        if taken.ok:
            await self.store.count(CRASH_RESEND_COUNTER)
            log.warning("taking over a text whose worker died mid-send")
        return taken.record if taken.ok else None

    # -- route and send ----------------------------------------------------

    async def _route(self, record: dict[str, str]) -> Routed:
        earliest_ms: int | None = None
        last: Routed | None = None
        for name in self.config.route(record.get("campaign", DEFAULT_ROUTE)):
            admitted = await self.provider_breakers.admit(name)
            if not admitted.allowed:
                # A paused breaker has no retry time (0): only an operator lifts it.
                if admitted.retry_at_ms:
                    earliest_ms = min(earliest_ms or admitted.retry_at_ms, admitted.retry_at_ms)
                continue
            sender = sticky_sender(record["to"], self.config.numbers[name])
            reservation = await self._reserve(name, sender, record)
            if reservation is not None:
                return Routed(name, None, defer=reservation)
            result = await self._send_via(name, sender, record)
            if result.category is not Category.TRANSIENT:
                return Routed(name, result)
            last = Routed(name, result)
            if result.error_code == ProviderTimeout.__name__:
                await self.store.count(TIMEOUT_FAILOVER_COUNTER)
            log.warning("provider fault", provider=name, error=mask_text(result.error or ""))
        if last is not None:
            return last
        wait_s = None if earliest_ms is None else max(0.0, (earliest_ms - store.now_ms()) / 1000)
        return Routed(
            None,
            SendResult(
                Category.TRANSIENT,
                error_code=NO_PROVIDER_CODE,
                error="every provider on the route is open or paused",
                retry_after_s=wait_s,
            ),
        )

    async def _reserve(
        self, provider: str, sender: str, record: dict[str, str]
    ) -> Reservation | None:
        """Take this text's rate-limit slot; sleep a short wait, return a long one."""
        if self.limiter is None:
            return None
        limits = limits_for(
            self.config.limits,
            provider=provider,
            sender=sender,
            carrier=record.get("carrier") or None,
            campaign=record.get("campaign", ""),
        )
        held, slot_ms = _held_slot(record)
        limits = [limit for limit in limits if limit.name not in held]
        if held and slot_ms > store.now_ms():
            await (self.sleep or asyncio.sleep)((slot_ms - store.now_ms()) / 1000)
        hold_all_us = self.config.limits.short_wait_ms * 1000
        reservation = await self.limiter.reserve(
            limits, int(record.get("segments") or 1), hold_all_us=hold_all_us
        )
        if reservation.go_now:
            return None
        if reservation.wait_us <= hold_all_us and reservation.reserved:
            await (self.sleep or asyncio.sleep)(reservation.wait_s)
            return None
        return reservation

    async def _defer(self, msg_id: str, routed: Routed) -> str:
        """Wait for a reserved slot as a delayed message: no retry spent, no error logged."""
        assert routed.defer is not None
        r = routed.defer
        wait_ms = max(1, r.wait_us // 1000)
        delay_ms = max(1, wait_ms - SLOT_LEAD_MS) if r.reserved else wait_ms
        fields = {
            "rl_slot_ms": store.now_ms() + wait_ms if r.reserved else "",
            "rl_held": ",".join(r.held),
        }
        # Its own queue: back on the main one it would wait behind the whole backlog
        # and miss its slot.
        requeue = dramatiq_message(msg_id, timed_queue(self.config.queue), delay_ms=delay_ms)
        await self.store.transition(
            msg_id,
            [Status.SENDING],
            Status.QUEUED,
            reason=f"rate limit {r.binding}: slot in {delay_ms} ms",
            fields=fields,
            requeue=requeue,
        )
        return "deferred"

    async def _send_via(self, name: str, sender: str, record: dict[str, str]) -> SendResult:
        provider = self.providers[name]
        text = self._outbound(name, sender, record)
        result = await self._send_once(provider, text)
        if worth_retrying_now(DEFAULT_QUICK_CAP_S)(result):
            # Most sends succeed at once: enter tenacity only for a retry.
            first_wait_s = result.retry_after_s or DEFAULT_QUICK_BASE_S
            await (self.sleep or asyncio.sleep)(min(DEFAULT_QUICK_CAP_S, first_wait_s))
            retrying = quick_retrying(sleep=self.sleep, attempts=DEFAULT_QUICK_ATTEMPTS - 1)
            result = await retrying(self._send_once, provider, text)
        if result.category is Category.THROTTLED:
            # Pacing says nothing of the provider's health: counted a success, a
            # throttled half-open probe would close the breaker.
            return result
        # Only a provider fault counts against the provider; a carrier's answer never does.
        weight = FAILURE_WEIGHT if result.category is Category.TRANSIENT else SUCCESS_WEIGHT
        decision = await self.provider_breakers.record(name, weight, result.error_code or "")
        self._announce(self.provider_breakers, name, decision, result.error_code)
        return result

    async def _send_once(self, provider: Provider, text: OutboundText) -> SendResult:
        try:
            return await provider.send(text)
        except ProviderError as exc:
            # Converted at the transport boundary; here it is one more category.
            return SendResult(Category.TRANSIENT, error_code=type(exc).__name__, error=str(exc))

    def _outbound(self, provider: str, sender: str, record: dict[str, str]) -> OutboundText:
        msg_id = record["id"]
        send_before = record.get("send_before_ms")
        return OutboundText(
            message_id=msg_id,
            to=record["to"],
            sender=sender,
            body=record["body"],
            status_callback_url=(
                f"{self.config.public_url}/webhooks/{provider}/status?mid={msg_id}"
            ),
            validity_s=_validity_s(int(send_before) if send_before else None),
        )

    # -- record the outcome ------------------------------------------------

    async def _record(self, msg_id: str, record: dict[str, str], routed: Routed) -> str:
        result = routed.result
        assert result is not None
        fields: dict[str, Any] = {
            "provider": routed.provider or "",
            "error_code": result.error_code,
            "error": result.error,
            # A slot is spent once the text has been sent (or tried).
            "rl_slot_ms": "",
            "rl_held": "",
        }
        fields["carrier"] = record.get("carrier") or ""
        if routed.provider is not None:
            # A provider answered: the pacing waits it ends were consecutive no more.
            # Only counters already set are reset: most texts never had one.
            if record.get(NO_PROVIDER_WAITS_FIELD):
                fields[NO_PROVIDER_WAITS_FIELD] = 0
            if record.get(THROTTLES_FIELD) and result.category is not Category.THROTTLED:
                fields[THROTTLES_FIELD] = 0
        if result.ok:
            fields["provider_message_id"] = result.provider_message_id
            await self._finish(msg_id, Status.SENT, f"accepted by {routed.provider}", fields)
            return Status.SENT.value
        if result.category in FINAL_FOR:
            status = FINAL_FOR[result.category]
            await self._finish(msg_id, status, f"{result.category}: {result.error_code}", fields)
            return status.value
        if result.category is Category.AMBIGUOUS and not self.config.retry_ambiguous:
            # The text may have gone: the operator chose a missed text over a doubled one.
            reason = f"{result.category}: {result.error_code} (worker.retry_ambiguous is off)"
            await self._finish(msg_id, Status.FAILED, reason, fields)
            return Status.FAILED.value
        return await self._retry_later(msg_id, record, result, fields)

    async def _retry_later(
        self, msg_id: str, record: dict[str, str], result: SendResult, fields: dict[str, Any]
    ) -> str:
        failures = int(record.get("failures") or 0)
        delay_ms = self._pacing_delay_ms(record, result, fields)
        pacing = delay_ms is not None
        if delay_ms is None:
            failures += 1
            delay_ms = self.config.backoff.delay_ms(max(1, failures), self.rng)
            if result.retry_after_s is not None:
                delay_ms = max(delay_ms, int(result.retry_after_s * 1000))
        fields["failures"] = failures
        if failures >= self.config.max_attempts:
            await self._finish(msg_id, Status.DEAD, f"retries exhausted: {result.category}", fields)
            return Status.DEAD.value
        delay_ms = max(1, delay_ms)
        requeue = dramatiq_message(msg_id, self.config.queue, delay_ms=delay_ms)
        await self.store.transition(
            msg_id,
            [Status.SENDING],
            Status.QUEUED,
            reason=f"{result.category}: retry in {delay_ms} ms",
            fields=fields,
            requeue=requeue,
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
            return full_jitter_ms(backoff.base_ms, backoff.cap_ms, throttles, self.rng)
        if result.error_code == NO_PROVIDER_CODE:
            waits = _bump(record, fields, NO_PROVIDER_WAITS_FIELD)
            if result.retry_after_s is not None:
                # The earliest breaker's cool-down end.
                return int(result.retry_after_s * 1000)
            return self.config.no_provider_backoff.delay_ms(waits, self.rng)
        return None

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


def _bump(record: dict[str, str], fields: dict[str, Any], counter: str) -> int:
    """Count one more consecutive wait of this kind in the record's ``counter`` field."""
    count = int(record.get(counter) or 0) + 1
    fields[counter] = count
    return count


def timed_queue(queue: str) -> str:
    """The queue for texts that hold a rate-limit slot."""
    return f"{queue}-timed"


def _held_slot(record: dict[str, str]) -> tuple[frozenset[str], int]:
    """The limiters holding this text's reserved slot, and the slot, if it is still good."""
    slot_ms = int(record.get("rl_slot_ms") or 0)
    now = store.now_ms()
    if not slot_ms or slot_ms > now + 2 * SLOT_LEAD_MS or slot_ms < now - SLOT_LATE_MS:
        return frozenset(), 0
    return frozenset(filter(None, record.get("rl_held", "").split(","))), slot_ms


def _expired(record: dict[str, str]) -> bool:
    send_before = record.get("send_before_ms")
    return bool(send_before) and int(send_before or 0) < store.now_ms()


def _validity_s(send_before_ms: int | None) -> int | None:
    if send_before_ms is None:
        return None
    # Each adapter clamps this to its provider's own maximum.
    return max(1, (send_before_ms - store.now_ms()) // 1000)
