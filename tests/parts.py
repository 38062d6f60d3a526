"""Send-path parts for tests, on a real Redis: what the composition root would build.

Tests give the providers (pointed at the simulator) and whatever they test;
everything else is a neutral real part: a carrier breaker that never trips,
no rate limits, no carrier lookup, an alerter that only logs, no sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import redis.asyncio as aioredis

from worker.alerts import Alerter
from worker.breaker import AsyncBreakers, Policy
from worker.carriers import CarrierResolver
from worker.expiry import ExpirySweeper
from worker.exposure import AsyncExposure, ExposurePolicy
from worker.holds import AsyncHolds
from worker.leases import LeaseSweeper, OrphanSweeper
from worker.maintenance import HoldKeeper
from worker.optouts import AsyncOptoutList
from worker.overdue import ReceiptTimeouts
from worker.providers.base import Provider
from worker.ratelimit import AsyncLimiter
from worker.sendpath import Parts, Pipeline, PipelineConfig, default_gates, recheck_gates
from worker.sendpath.feedback import CarrierFeed
from worker.sendpath.parts import Sleep
from worker.store import AsyncStore
from worker.watch import Layout, WatchCounters, WatchSettings

# A carrier breaker for tests that are not about carriers: it never opens.
NEVER_TRIPS = Policy(consecutive=1_000_000, min_calls=1_000_000)


async def no_sleep(_: float) -> None:
    return None


def feed(
    aclient: aioredis.Redis,
    ns: str,
    breakers: AsyncBreakers | None = None,
    *,
    carriers: CarrierResolver | None = None,
    alerter: Alerter | None = None,
    ambiguous_weight: float = 0.3,
) -> CarrierFeed:
    return CarrierFeed(
        breakers or AsyncBreakers(aclient, "carrier", NEVER_TRIPS, ns, cache_ms=0),
        carriers or CarrierResolver(aclient, ns=ns),
        alerter or Alerter([]),
        ambiguous_weight,
    )


def pipeline(
    config: PipelineConfig,
    aclient: aioredis.Redis,
    ns: str,
    providers: Mapping[str, Provider],
    provider_breakers: AsyncBreakers | None = None,
    *,
    carrier_breakers: AsyncBreakers | None = None,
    carriers: CarrierResolver | None = None,
    limiter: AsyncLimiter | None = None,
    alerter: Alerter | None = None,
    rng: random.Random | None = None,
    ambiguous_weight: float = 0.3,
    sleep: Sleep = no_sleep,
    exposure: AsyncExposure | None = None,
) -> Pipeline:
    alerter = alerter or Alerter([])
    carriers = carriers or CarrierResolver(aclient, ns=ns)
    carrier_breakers = carrier_breakers or AsyncBreakers(
        aclient, "carrier", NEVER_TRIPS, ns, cache_ms=0
    )
    parts = Parts(
        store=AsyncStore(aclient, ns),
        providers=dict(providers),
        provider_breakers=provider_breakers or AsyncBreakers(aclient, "provider", Policy(), ns),
        carrier_breakers=carrier_breakers,
        limiter=limiter or AsyncLimiter(aclient, ns),
        carriers=carriers,
        feed=CarrierFeed(carrier_breakers, carriers, alerter, ambiguous_weight),
        alerter=alerter,
        optouts=AsyncOptoutList(aclient, ns),
        exposure=exposure or AsyncExposure(aclient, ExposurePolicy(), ns),
        watch=WatchCounters(aclient, Layout.of(WatchSettings()), ns),
        sleep=sleep,
        rng=rng or random.Random(),
    )
    return Pipeline(config, parts, default_gates(parts, config), recheck_gates(parts, config))


# CarrierBreakerSettings.probe_timeout_s's default.
DEFAULT_CARRIER_PROBE_TIMEOUT_S = 120.0


def keeper(
    aclient: aioredis.Redis,
    queue: str,
    ns: str,
    *,
    probes: int = 2,
    probe_timeout_s: float = DEFAULT_CARRIER_PROBE_TIMEOUT_S,
    orphan_after_s: float = 60.0,
    lease_ms: int = 60_000,
    exposure: AsyncExposure | None = None,
    overdue: ReceiptTimeouts | None = None,
) -> HoldKeeper:
    claims = Policy(probes=probes, probe_timeout_s=probe_timeout_s)
    return HoldKeeper(
        AsyncHolds(aclient, queue, ns),
        # Only claims go through it: the workers' probe count and timeout.
        AsyncBreakers(aclient, "carrier", claims, ns, cache_ms=0),
        LeaseSweeper(aclient, queue=queue, lease_ms=lease_ms, ns=ns),
        OrphanSweeper(aclient, queue=queue, orphan_after_s=orphan_after_s, ns=ns),
        expiry=ExpirySweeper(aclient, ns=ns),
        exposure=exposure,
        overdue=overdue,
    )
