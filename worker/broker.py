"""The dramatiq broker: the Redis a URL names, or the embedded one by default."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO, Middleware
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
    broker.add_middleware(ExitOnSecondSignal())
    return broker


def install(settings: Settings) -> RedisBroker:
    broker = make_broker(redis_url(settings), int(settings.worker.heartbeat_timeout_s * 1000))
    dramatiq.set_broker(broker)
    return broker


# dramatiq's exit code for a worker process killed by a second signal.
RET_KILLED = 1


class ExitOnSecondSignal(Middleware):
    """A second SIGTERM (or SIGHUP) while a worker process stops exits it at once.

    dramatiq's own handler raises SystemExit from inside ``worker.stop()``; the
    consumer threads are then never stopped and the interpreter waits for them
    forever, so a container's ``stop`` (or a second Ctrl-C) left a hung process.
    Texts in flight are safe either way: their leases run out and they are taken
    over (through ``unconfirmed`` where an HTTP call may have gone out).
    """

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if signum is not None:
                signal.signal(signum, _second_signal_exits(signal.getsignal(signum)))


def _second_signal_exits(first: Any) -> Callable[[int, FrameType | None], None]:
    seen = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal seen
        if seen:
            log.warning("second signal while stopping: exiting now")
            os._exit(RET_KILLED)
        seen = True
        if callable(first):
            first(signum, frame)

    return handler
