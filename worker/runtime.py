"""Per-process wiring: settings → Redis client, provider, pipeline.

Async clients bind to the event loop that first uses them, so the pipeline
is built lazily on the worker's event-loop thread, once per process.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from worker.broker import redis_url
from worker.delivery import Pipeline, PipelineConfig
from worker.errors import ConfigError
from worker.providers.base import Provider
from worker.providers.twilio import TwilioProvider
from worker.retry import Backoff
from worker.settings import Settings
from worker.store import AsyncStore

DEFAULT_REDIS_POOL_SIZE = 64


def async_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        redis_url(settings),
        max_connections=DEFAULT_REDIS_POOL_SIZE,
        health_check_interval=15,
        retry_on_timeout=True,
    )


def twilio_provider(settings: Settings) -> TwilioProvider:
    if settings.twilio_auth_token is None:
        raise ConfigError(
            "providers.twilio: no auth token; set SENDQ_TWILIO_AUTH_TOKEN in the environment"
        )
    cfg = settings.providers.twilio
    return TwilioProvider(
        account_sid=cfg.account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        base_url=cfg.base_url,
        timeout_s=cfg.timeout_s,
        max_connections=cfg.max_connections,
    )


def providers(settings: Settings) -> dict[str, Provider]:
    return {"twilio": twilio_provider(settings)}


def build_pipeline(settings: Settings) -> Pipeline:
    w = settings.worker
    config = PipelineConfig(
        queue=w.queue,
        public_url=settings.webhooks.public_url,
        numbers=settings.providers.twilio.numbers,
        max_attempts=w.max_attempts,
        backoff=Backoff(base_ms=w.retry_base_ms, cap_ms=w.retry_cap_ms),
        lease_ms=int(w.send_lease_s * 1000),
    )
    return Pipeline(config, AsyncStore(async_redis(settings)), twilio_provider(settings))


_pipeline: Pipeline | None = None


def pipeline(settings: Settings) -> Pipeline:
    global _pipeline
    if _pipeline is None:
        _pipeline = build_pipeline(settings)
    return _pipeline
