"""Route: walk the campaign's providers; for each, reserve a slot, record the attempt, send.

Only an outcome that provably sent nothing fails over or is retried at once:
a refused connection, a DNS or TLS failure, a connect timeout (``not sent``),
and a provider's own 5xx or throttling answer. A provider fault counts against
that provider's breaker. An answer about the text itself (bad number, opted
out, carrier block) is returned at once and never failed over: sending a
carrier-blocked text through another provider is snowshoeing. An outcome that
may have sent the text (``uncertain``, ``ambiguous``) is returned at once too:
it goes to ``unconfirmed``, never to another provider.

Every HTTP attempt, quick retries included, takes its own rate-limit slot and
is written to the record before it is made (``ledger``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from worker import callbacks, store
from worker.errors import ProviderError, ProviderUnreachable, TokenRefused
from worker.models import REPLY_FROM_FIELD, REPLY_PROVIDER_FIELD, Category
from worker.providers.base import OutboundText, Provider, SendResult
from worker.ratelimit import Reservation
from worker.retry import (
    DEFAULT_QUICK_ATTEMPTS,
    DEFAULT_QUICK_BASE_S,
    DEFAULT_QUICK_CAP_S,
    quick_retrying,
    worth_retrying_now,
)
from worker.routing import sticky_sender
from worker.sendpath.config import PipelineConfig
from worker.sendpath.gates.base import Gate, Kind, Verdict
from worker.sendpath.ledger import Ledger
from worker.sendpath.parts import Parts
from worker.sendpath.reserve import Reserver
from worker.sendpath.text import Text
from worker.verdicts import provider_weight

log = structlog.get_logger("sendq.delivery")

NO_PROVIDER_CODE = "no_provider"
# An attempt this long after the gates said go asks them again: a STOP heard, a
# deadline or quiet hours reached while the text waited for its slot or a retry.
RECHECK_AFTER_S = 0.02
# A text that keeps finding itself late takes at most this many fresh slots.
LATE_RESERVATIONS = 3


@dataclass(slots=True)
class Routed:
    """What the route produced: the provider that answered (if any) and its answer.

    ``defer`` instead: the text holds a rate-limit slot too far ahead to sleep for.
    ``stale``: this worker lost the text's lease before it could send.
    """

    provider: str | None
    result: SendResult | None
    defer: Reservation | None = None
    stale: bool = False
    # A gate asked again before an attempt said hold or end: nothing was sent.
    verdict: Verdict | None = None


class _Stop(Exception):
    """Leave the quick retries: the text waits for a slot, or is not ours any more."""

    def __init__(self, routed: Routed) -> None:
        self.routed = routed


class Router:
    def __init__(
        self,
        config: PipelineConfig,
        parts: Parts,
        ledger: Ledger,
        rechecks: Sequence[Gate] = (),
    ) -> None:
        self.config = config
        self.parts = parts
        self.ledger = ledger
        self.rechecks = list(rechecks)
        self.reserver = Reserver(config, parts)

    async def route(self, text: Text) -> Routed:
        earliest_ms: int | None = None
        last: Routed | None = None
        pinned = text.record.get(REPLY_PROVIDER_FIELD)
        if pinned and pinned not in self.parts.providers:
            return Routed(
                None,
                SendResult(
                    Category.PERMANENT,
                    error_code="no_such_provider",
                    error=f"the reply's provider {pinned!r} is not configured here",
                ),
            )
        for name in [pinned] if pinned else self.config.route(text.campaign):
            admitted = await self.parts.provider_breakers.admit(name)
            if not admitted.allowed:
                # A paused breaker has no retry time (0): only an operator lifts it.
                if admitted.retry_at_ms:
                    earliest_ms = min(earliest_ms or admitted.retry_at_ms, admitted.retry_at_ms)
                continue
            try:
                result = await self._send_via(name, self._sender(name, text), text)
            except _Stop as stop:
                return stop.routed
            if result.category is not Category.TRANSIENT:
                return Routed(name, result)
            last = Routed(name, result)
            log.warning("provider fault", provider=name, error=result.error or "")
        return last if last is not None else _no_provider(earliest_ms)

    def _sender(self, name: str, text: Text) -> str:
        """A reply goes from the number the person wrote to; any other text from its
        recipient's sticky number."""
        return text.record.get(REPLY_FROM_FIELD) or sticky_sender(
            text.to, self.config.numbers[name]
        )

    async def _send_via(self, name: str, sender: str, text: Text) -> SendResult:
        result = await self._attempt(name, sender, text)
        if worth_retrying_now(DEFAULT_QUICK_CAP_S)(result):
            # Most sends succeed at once: enter tenacity only for a retry.
            first_wait_s = result.retry_after_s or DEFAULT_QUICK_BASE_S
            await self.parts.sleep(min(DEFAULT_QUICK_CAP_S, first_wait_s))
            retrying = quick_retrying(sleep=self.parts.sleep, attempts=DEFAULT_QUICK_ATTEMPTS - 1)
            result = await retrying(self._attempt, name, sender, text)
        weight = provider_weight(result.category)
        if weight is not None:
            breakers = self.parts.provider_breakers
            decision = await breakers.record(name, weight, result.error_code or "")
            self.parts.announce(breakers, name, decision, result.error_code)
        return result

    async def _attempt(self, name: str, sender: str, text: Text) -> SendResult:
        """One HTTP attempt: its own slot, its ledger entry, then the call."""
        await self._reserve(name, sender, text)
        await self._recheck(name, text)
        if not await self.ledger.begin(text, name, sender):
            raise _Stop(Routed(name, None, stale=True))
        for _ in range(LATE_RESERVATIONS):
            if not self.reserver.late(text):
                break
            # Sent now it would bunch with texts that left on time: take a fresh slot.
            await self._reserve(name, sender, text)
        result = await _send_once(self.parts.providers[name], self._outbound(name, sender, text))
        text.pending[f"a{text.attempt}:outcome"] = result.category.value
        if result.category is Category.TRANSIENT:
            # Nothing was sent, or the provider said it failed: a retry or failover
            # follows, and a worker lost before it must not leave the attempt "open".
            await self.ledger.close(text)
        return result

    async def _recheck(self, name: str, text: Text) -> None:
        """After a wait, the gates that could have changed their mind are asked again."""
        if time.monotonic() - text.gated_at_s < RECHECK_AFTER_S:
            return
        for gate in self.rechecks:
            verdict = await gate.check(text)
            if verdict.kind is not Kind.GO:
                raise _Stop(Routed(name, None, verdict=verdict))
        text.gated_at_s = time.monotonic()

    async def _reserve(self, name: str, sender: str, text: Text) -> None:
        reservation = await self.reserver.reserve(name, sender, text)
        if reservation is not None:
            raise _Stop(Routed(name, None, defer=reservation))

    def _outbound(self, provider: str, sender: str, text: Text) -> OutboundText:
        deadlines = [
            text.record.get("send_before_ms"),
            self.config.campaign_send_before_ms.get(text.campaign),
        ]
        given = [int(d) for d in deadlines if d]
        return OutboundText(
            message_id=text.id,
            to=text.to,
            sender=sender,
            body=text.record["body"],
            status_callback_url=callbacks.status_url(
                self.config.public_url, provider, text.id, text.attempt
            ),
            validity_s=_validity_s(min(given) if given else None),
        )


async def _send_once(provider: Provider, text: OutboundText) -> SendResult:
    try:
        result = await provider.send(text)
    except (ProviderUnreachable, TokenRefused) as exc:
        # Converted at the transport boundary: nothing reached the provider.
        return SendResult(Category.TRANSIENT, error_code=type(exc).__name__, error=str(exc))
    except Exception as exc:
        # Anything else after the attempt was written may have sent the text.
        code = type(exc).__name__ if isinstance(exc, ProviderError) else "ProviderUncertain"
        return SendResult(Category.UNCERTAIN, error_code=code, error=str(exc)[:300])
    if result.ok and not result.provider_message_id:
        # Accepted, says a 2xx, but with no id to match its receipts to: whatever
        # the adapter, the text may have gone and cannot be told apart: ambiguous.
        return SendResult(
            Category.AMBIGUOUS,
            error_code="no_message_id",
            error="a 2xx answer without a message id",
            carrier=result.carrier,
        )
    return result


def _no_provider(earliest_ms: int | None) -> Routed:
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


def _validity_s(send_before_ms: int | None) -> int | None:
    if send_before_ms is None:
        return None
    # Each adapter clamps this to its provider's own maximum.
    return max(1, (send_before_ms - store.now_ms()) // 1000)
