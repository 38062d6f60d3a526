"""The dramatiq broker: the Redis a URL names, or the embedded one by default."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO

from worker import embedded
from worker.settings import Settings

SEND_ACTOR = "send_text"
# dramatiq requeues a dead worker's unacked texts only when queue maintenance
# runs; these make that happen within seconds rather than minutes.
DEFAULT_HEARTBEAT_TIMEOUT_MS = 15_000
DEFAULT_MAINTENANCE_CHANCE = 20_000  # per million dispatch calls


def redis_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started if need be)."""
    if settings.redis_url:
        return settings.redis_url
    return embedded.ensure(settings.data_dir)


def make_broker(url: str, heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS) -> RedisBroker:
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=url,
        heartbeat_timeout=heartbeat_timeout_ms,
        maintenance_chance=DEFAULT_MAINTENANCE_CHANCE,
        health_check_interval=15,
        retry_on_timeout=True,
    )
    broker.add_middleware(AsyncIO())
    return broker


def install(settings: Settings) -> RedisBroker:
    broker = make_broker(
        redis_url(settings), int(settings.worker.heartbeat_timeout_s * 1000)
    )
    dramatiq.set_broker(broker)
    return broker
