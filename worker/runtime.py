"""Per-process wiring: settings → Redis client, provider, pipeline.

Async clients bind to the event loop that first uses them, so the pipeline
is built lazily on the worker's event-loop thread, once per process.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from worker.broker import redis_url
from worker.delivery import Pipeline, PipelineConfig
from worker.breaker import AsyncBreakers, Policy
from worker.providers import registry
from worker.ratelimit import AsyncLimiter
from worker.providers.base import Provider
from worker.retry import Backoff
from worker.settings import BreakerSettings, Settings
from worker.store import AsyncStore

DEFAULT_REDIS_POOL_SIZE = 64


def async_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        redis_url(settings),
        max_connections=DEFAULT_REDIS_POOL_SIZE,
        health_check_interval=15,
        retry_on_timeout=True,
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
    )


_pipeline: Pipeline | None = None


def pipeline(settings: Settings) -> Pipeline:
    global _pipeline
    if _pipeline is None:
        _pipeline = build_pipeline(settings)
    return _pipeline
