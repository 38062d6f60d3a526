"""Route: walk the campaign's providers, reserve a slot, send, fail over on provider faults.

A provider fault (5xx, timeout, refused connection, auth failure) counts
against that provider's breaker and the text goes to the next provider on the
route; an answer about the text itself (bad number, opted out, carrier block)
is returned at once and never failed over: sending a carrier-blocked text
through another provider is snowshoeing.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from worker import store
from worker.errors import ProviderError, ProviderTimeout
from worker.models import Category
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
from worker.sendpath.parts import Parts
from worker.sendpath.reserve import Reserver
from worker.sendpath.text import Text
from worker.verdicts import provider_weight

log = structlog.get_logger("sendq.delivery")

# A timed-out request may have reached the provider: failing over may double it.
TIMEOUT_FAILOVER_COUNTER = "failovers_after_timeout"
NO_PROVIDER_CODE = "no_provider"


@dataclass(slots=True)
class Routed:
    """What the route produced: the provider that answered (if any) and its answer.

    ``defer`` instead: the text holds a rate-limit slot too far ahead to sleep for.
    """

    provider: str | None
    result: SendResult | None
    defer: Reservation | None = None


class Router:
    def __init__(self, config: PipelineConfig, parts: Parts) -> None:
        self.config = config
        self.parts = parts
        self.reserver = Reserver(config, parts)

    async def route(self, text: Text) -> Routed:
        earliest_ms: int | None = None
        last: Routed | None = None
        for name in self.config.route(text.campaign):
            admitted = await self.parts.provider_breakers.admit(name)
            if not admitted.allowed:
                # A paused breaker has no retry time (0): only an operator lifts it.
                if admitted.retry_at_ms:
                    earliest_ms = min(earliest_ms or admitted.retry_at_ms, admitted.retry_at_ms)
                continue
            sender = sticky_sender(text.to, self.config.numbers[name])
            reservation = await self.reserver.reserve(name, sender, text)
            if reservation is not None:
                return Routed(name, None, defer=reservation)
            result = await self._send_via(name, sender, text)
            if result.category is not Category.TRANSIENT:
                return Routed(name, result)
            last = Routed(name, result)
            if result.error_code == ProviderTimeout.__name__:
                await self.parts.store.count(TIMEOUT_FAILOVER_COUNTER)
            log.warning("provider fault", provider=name, error=result.error or "")
        return last if last is not None else _no_provider(earliest_ms)

    async def _send_via(self, name: str, sender: str, text: Text) -> SendResult:
        provider = self.parts.providers[name]
        outbound = self._outbound(name, sender, text)
        result = await _send_once(provider, outbound)
        if worth_retrying_now(DEFAULT_QUICK_CAP_S)(result):
            # Most sends succeed at once: enter tenacity only for a retry.
            first_wait_s = result.retry_after_s or DEFAULT_QUICK_BASE_S
            await self.parts.sleep(min(DEFAULT_QUICK_CAP_S, first_wait_s))
            retrying = quick_retrying(sleep=self.parts.sleep, attempts=DEFAULT_QUICK_ATTEMPTS - 1)
            result = await retrying(_send_once, provider, outbound)
        weight = provider_weight(result.category)
        if weight is None:
            return result
        breakers = self.parts.provider_breakers
        decision = await breakers.record(name, weight, result.error_code or "")
        self.parts.announce(breakers, name, decision, result.error_code)
        return result

    def _outbound(self, provider: str, sender: str, text: Text) -> OutboundText:
        send_before = text.record.get("send_before_ms")
        return OutboundText(
            message_id=text.id,
            to=text.to,
            sender=sender,
            body=text.record["body"],
            status_callback_url=(
                f"{self.config.public_url}/webhooks/{provider}/status?mid={text.id}"
            ),
            validity_s=_validity_s(int(send_before) if send_before else None),
        )


async def _send_once(provider: Provider, text: OutboundText) -> SendResult:
    try:
        return await provider.send(text)
    except ProviderError as exc:
        # Converted at the transport boundary; here it is one more category.
        return SendResult(Category.TRANSIENT, error_code=type(exc).__name__, error=str(exc))


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
