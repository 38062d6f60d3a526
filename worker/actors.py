"""The dramatiq actors, kept thin: they call ``worker.delivery``.

``dramatiq worker.actors`` (or ``sendq worker``) imports this module, which
installs the broker from settings.
"""

from __future__ import annotations

import asyncio

import dramatiq

from worker import logs, runtime
from worker.broker import SEND_ACTOR, install
from worker.delivery import timed_queue
from worker.holds import AsyncHolds
from worker.leases import LeaseSweeper
from worker.maintenance import HoldKeeper, HoldMaintenance
from worker.settings import get_settings

try:
    import uvloop

    # dramatiq's event-loop thread calls new_event_loop(): make that uvloop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
    pass

settings = get_settings()
logs.configure(settings.log_level)
broker = install(settings)


def _keeper() -> HoldKeeper:
    # Built on the event-loop thread, sharing the pipeline's Redis client.
    client = runtime.pipeline(settings).store.client
    return HoldKeeper(
        client,
        AsyncHolds(client, settings.worker.queue),
        probes=settings.breakers.carrier.probes,
        probe_timeout_s=settings.breakers.carrier.probe_timeout_s,
        orphan_after_s=settings.worker.orphan_after_s,
        sweep_s=settings.worker.sweep_s,
        leases=LeaseSweeper(
            client,
            queue=settings.worker.queue,
            lease_ms=int(settings.worker.send_lease_s * 1000),
        ),
    )


broker.add_middleware(HoldMaintenance(_keeper, settings.breakers.tick_s))
# Texts coming back for a reserved rate-limit slot: consumed beside the main queue.
broker.declare_queue(timed_queue(settings.worker.queue))

# Unexpected errors (Redis away, a bug) are retried by dramatiq; provider
# outcomes are retried by the pipeline itself and never raise.
DEFAULT_MAX_RETRIES = 1000
DEFAULT_MIN_BACKOFF_MS = 500
DEFAULT_MAX_BACKOFF_MS = 30_000


@dramatiq.actor(
    actor_name=SEND_ACTOR,
    queue_name=settings.worker.queue,
    max_retries=DEFAULT_MAX_RETRIES,
    min_backoff=DEFAULT_MIN_BACKOFF_MS,
    max_backoff=DEFAULT_MAX_BACKOFF_MS,
)
async def send_text(message_id: str) -> None:
    await runtime.pipeline(settings).deliver(message_id)
