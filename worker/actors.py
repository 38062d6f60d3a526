"""The dramatiq actors, kept thin: they call the send path the composition root built.

``dramatiq worker.actors`` (or ``sendq worker``) imports this module, which
installs the broker from settings.
"""

from __future__ import annotations

import asyncio

import dramatiq

from worker import logs, wire, wiring
from worker.broker import install
from worker.maintenance import HoldMaintenance

try:
    import uvloop

    # dramatiq's event-loop thread calls new_event_loop(): make that uvloop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
    pass

root = wiring.root()
settings = root.settings
logs.configure(settings.log_level)
broker = install(settings)

# Built on the event-loop thread, sharing the pipeline's Redis client.
broker.add_middleware(HoldMaintenance(root.keeper, settings.breakers.tick_s))
# Texts coming back for a reserved rate-limit slot: consumed beside the main queue.
broker.declare_queue(wire.timed_queue(settings.worker.queue))

# Unexpected errors (Redis away, a bug) are retried by dramatiq; provider
# outcomes are retried by the pipeline itself and never raise.
DEFAULT_MAX_RETRIES = 1000
DEFAULT_MIN_BACKOFF_MS = 500
DEFAULT_MAX_BACKOFF_MS = 30_000


@dramatiq.actor(
    actor_name=wire.SEND_ACTOR,
    queue_name=settings.worker.queue,
    max_retries=DEFAULT_MAX_RETRIES,
    min_backoff=DEFAULT_MIN_BACKOFF_MS,
    max_backoff=DEFAULT_MAX_BACKOFF_MS,
)
async def send_text(message_id: str) -> None:
    await root.pipeline.deliver(message_id)
