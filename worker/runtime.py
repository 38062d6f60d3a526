"""Per-process wiring: settings → Redis client, provider, pipeline.

Async clients bind to the event loop that first uses them, so the pipeline
is built lazily on the worker's event-loop thread, once per process.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from worker.alerts import Alerter
from worker.breaker import AsyncBreakers, Policy
from worker.broker import async_reconnect_retry, redis_url
from worker.carriers import CarrierResolver, load_overrides
from worker.delivery import Pipeline, PipelineConfig
from worker.providers import registry, transport
from worker.providers.base import Provider
from worker.ratelimit import AsyncLimiter
from worker.retry import Backoff
from worker.settings import BreakerSettings, Settings
from worker.store import AsyncStore
from worker.webhooks import CarrierFeed

DEFAULT_REDIS_POOL_SIZE = 64


def async_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        redis_url(settings),
        max_connections=DEFAULT_REDIS_POOL_SIZE,
        health_check_interval=15,
        retry=async_reconnect_retry(),
    )


def providers(settings: Settings) -> dict[str, Provider]:
    return registry.build_all(settings)


def breaker_policy(cfg: BreakerSettings) -> Policy:
    return Policy(
        window_s=cfg.window_s,
        min_calls=cfg.min_calls,
        failure_rate=cfg.failure_rate,
        consecutive=cfg.consecutive,
        cooldown_s=cfg.cooldown_s,
        cooldown_max_s=cfg.cooldown_max_s,
        probes=cfg.probes,
        probe_timeout_s=cfg.probe_timeout_s,
    )


def carrier_breakers(settings: Settings, client: aioredis.Redis) -> AsyncBreakers:
    cfg = settings.breakers.carrier
    return AsyncBreakers(client, "carrier", breaker_policy(cfg), cache_ms=cfg.cache_ms)


def carrier_resolver(settings: Settings, client: aioredis.Redis) -> CarrierResolver:
    cfg = settings.carriers
    overrides = load_overrides(cfg.override_file) if cfg.override_file else {}
    lookup = None
    if cfg.lookup == "twilio" and settings.twilio_auth_token is not None:
        lookup = transport.make_client(
            base_url=cfg.lookup_url,
            auth=(
                settings.providers.twilio.account_sid,
                settings.twilio_auth_token.get_secret_value(),
            ),
            timeout_s=settings.providers.twilio.timeout_s,
        )
    return CarrierResolver(client, overrides=overrides, lookup=lookup, cache_ttl_s=cfg.cache_ttl_s)


def carrier_feed(settings: Settings, client: aioredis.Redis) -> CarrierFeed:
    return CarrierFeed(
        carrier_breakers(settings, client),
        Alerter(settings.alerts.urls),
        settings.breakers.carrier.ambiguous_weight,
    )


def build_pipeline(settings: Settings) -> Pipeline:
    w = settings.worker
    built = providers(settings)
    config = PipelineConfig(
        queue=w.queue,
        public_url=settings.webhooks.public_url,
        routes=settings.routes,
        numbers={name: getattr(settings.providers, name).numbers for name in built},
        max_attempts=w.max_attempts,
        backoff=Backoff(base_ms=w.retry_base_ms, cap_ms=w.retry_cap_ms),
        lease_ms=int(w.send_lease_s * 1000),
        limits=settings.limits,
        retry_ambiguous=w.retry_ambiguous,
    )
    client = async_redis(settings)
    return Pipeline(
        config,
        AsyncStore(client),
        built,
        AsyncBreakers(
            client,
            "provider",
            breaker_policy(settings.breakers.provider),
            cache_ms=settings.breakers.provider.cache_ms,
        ),
        AsyncLimiter(client),
        carriers=carrier_resolver(settings, client),
        carrier_breakers=carrier_breakers(settings, client),
        alerter=Alerter(settings.alerts.urls),
        ambiguous_weight=settings.breakers.carrier.ambiguous_weight,
    )


_pipeline: Pipeline | None = None


def pipeline(settings: Settings) -> Pipeline:
    global _pipeline
    if _pipeline is None:
        _pipeline = build_pipeline(settings)
    return _pipeline
