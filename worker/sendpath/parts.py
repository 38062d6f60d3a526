"""Everything the send path works with, built by the composition root; nothing optional."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from worker.alerts import Alerter
from worker.breaker import AsyncBreakers, Decision
from worker.carriers import CarrierResolver
from worker.exposure import AsyncExposure
from worker.optouts import AsyncOptoutList
from worker.providers.base import Provider
from worker.ratelimit import AsyncLimiter
from worker.sendpath.feedback import CarrierFeed
from worker.store import AsyncStore
from worker.watch.counters import WatchCounters

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class Parts:
    store: AsyncStore
    providers: Mapping[str, Provider]
    provider_breakers: AsyncBreakers
    carrier_breakers: AsyncBreakers
    limiter: AsyncLimiter
    carriers: CarrierResolver
    feed: CarrierFeed
    alerter: Alerter
    optouts: AsyncOptoutList
    exposure: AsyncExposure
    # The deliverability watch's counts: each text a provider accepted.
    watch: WatchCounters
    # Injected so tests neither wait nor draw random jitter.
    sleep: Sleep = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)

    def announce(
        self, breakers: AsyncBreakers, name: str, decision: Decision, code: str | None = None
    ) -> None:
        """Alert a breaker's transition, with the reason it gave (else the last code)."""
        if not decision.transition:
            return
        why = decision.why or (f"last error {code}" if code else "")
        self.alerter.announce(breakers.kind, name, decision.transition, why=why)
