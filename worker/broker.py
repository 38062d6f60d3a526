"""The dramatiq broker: the Redis a URL names, or the embedded one by default."""

from __future__ import annotations

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from worker import embedded
from worker.settings import Settings

log = structlog.get_logger("sendq.redis")

# About three minutes of retries with backoff capped at 5 s: a Redis restart
# is waited out, and then every command goes on where it stopped.
DEFAULT_RECONNECT_RETRIES = 40
DEFAULT_RECONNECT_CAP_S = 5.0
# dramatiq requeues a dead worker's unacked texts only when queue maintenance
# runs; these make that happen within seconds rather than minutes.
DEFAULT_HEARTBEAT_TIMEOUT_MS = 15_000
DEFAULT_MAINTENANCE_CHANCE = 20_000  # per million dispatch calls


def redis_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started if need be)."""
    if settings.redis_url:
        return settings.redis_url
    return embedded.ensure(settings.data_dir)


class ReconnectBackoff(ExponentialWithJitterBackoff):
    """redis-py's backoff, saying so each time it waits for Redis to come back."""

    def compute(self, failures: int) -> float:
        delay_s = float(super().compute(failures))
        log.warning(
            "redis unavailable; reconnecting", attempt=failures, retry_in_s=round(delay_s, 2)
        )
        return delay_s


def reconnect_retry(retries: int = DEFAULT_RECONNECT_RETRIES) -> Retry:
    """For long-running processes: ride out a Redis restart instead of failing sends."""
    return Retry(ReconnectBackoff(cap=DEFAULT_RECONNECT_CAP_S, base=0.1), retries)


def async_reconnect_retry(retries: int = DEFAULT_RECONNECT_RETRIES) -> AsyncRetry:
    return AsyncRetry(ReconnectBackoff(cap=DEFAULT_RECONNECT_CAP_S, base=0.1), retries)


def make_broker(url: str, heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS) -> RedisBroker:
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=url,
        retry=reconnect_retry(),
        heartbeat_timeout=heartbeat_timeout_ms,
        maintenance_chance=DEFAULT_MAINTENANCE_CHANCE,
        health_check_interval=15,
        retry_on_timeout=True,
    )
    broker.add_middleware(AsyncIO())
    return broker


def install(settings: Settings) -> RedisBroker:
    broker = make_broker(redis_url(settings), int(settings.worker.heartbeat_timeout_s * 1000))
    dramatiq.set_broker(broker)
    return broker
