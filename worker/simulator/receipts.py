"""Delivery receipts: signed requests, posted late and retried like a provider's.

The poster knows no provider: a dialect hands it a ``ReceiptBuilder`` that
makes the signed request (method, URL, headers, body) for each attempt, so a
signature that covers a timestamp (Telnyx, Vonage) is fresh when it is sent,
and an attempt counter in the body (Telnyx's ``meta.attempt``) is right.

Sending a text only schedules its receipt (``loop.call_later`` onto a queue);
a few worker tasks drain the queue over one pooled client, so request
handling never waits on a callback URL.

The client is aiohttp's own session rather than ``transport.make_client``:
measured here, a post through httpx (even on the aiohttp transport) cost
450-600 us of CPU against about 140 us for plain aiohttp, and the simulator
posts one receipt per send while serving thousands of sends a second.

A post that fails (connection error, timeout or 5xx) is retried with
exponential backoff: 1, 2, 4, 8, 16 s by default, six tries over about 30 s.

Handsets' replies (handsets.py) go through a poster of their own, built with
``post_stale=False`` (a reply scheduled before a reset is dropped, not posted
into the next run) and an ``observer`` per reply, told of every attempt: when
it started, when and how sendq's webhook answered, whether another follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from worker.simulator.dialect import ReceiptBuilder

DEFAULT_WORKERS = 32
DEFAULT_MAX_TRIES = 6
DEFAULT_RETRY_BASE_S = 1.0
DEFAULT_TIMEOUT_S = 5.0
MAX_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at posting: its number, when it started and ended (Unix s), the answer."""

    tries: int
    started_at: float
    ended_at: float
    # None: no HTTP answer (refused, reset, timed out).
    status: int | None
    # No other try follows (answered, refused, or out of tries).
    final: bool


Observer = Callable[[Attempt], None]


@dataclass(slots=True)
class Receipt:
    build: ReceiptBuilder
    generation: int
    tries: int = 0
    observer: Observer | None = None


class ReceiptPoster:
    """Posts signed receipts from a queue; counts what was sent, failed and pending."""

    def __init__(
        self,
        *,
        workers: int = DEFAULT_WORKERS,
        max_tries: int = DEFAULT_MAX_TRIES,
        retry_base_s: float = DEFAULT_RETRY_BASE_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        post_stale: bool = True,
    ) -> None:
        self.workers = workers
        self.post_stale = post_stale
        self.max_tries = max_tries
        self.retry_base_s = retry_base_s
        self.timeout_s = timeout_s
        self.sent = self.failed = self.pending = 0
        # A reset starts a new generation: receipts of an older one are still
        # posted (sendq is waiting for them) but no longer counted.
        self._generation = 0
        self._queue: asyncio.Queue[Receipt] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.workers),
            timeout=aiohttp.ClientTimeout(
                total=self.timeout_s, connect=min(self.timeout_s, MAX_CONNECT_TIMEOUT_S)
            ),
            # Each dialect names its own User-Agent; none by default.
            skip_auto_headers=("User-Agent",),
        )
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    def schedule(
        self, build: ReceiptBuilder, delay_s: float, observer: Observer | None = None
    ) -> None:
        """Post the request ``build`` makes ``delay_s`` from now; returns at once.
        ``observer`` hears of every attempt."""
        self.pending += 1
        self._later(delay_s, Receipt(build, self._generation, observer=observer))

    def reset(self) -> None:
        self._generation += 1
        self.sent = self.failed = self.pending = 0

    def _later(self, delay_s: float, receipt: Receipt) -> None:
        assert self._loop is not None, "start() the poster first"
        if delay_s <= 0:
            self._queue.put_nowait(receipt)
        else:
            self._loop.call_later(delay_s, self._queue.put_nowait, receipt)

    async def _work(self) -> None:
        while True:
            receipt = await self._queue.get()
            if not self.post_stale and receipt.generation != self._generation:
                continue  # scheduled before a reset: not posted into the new run
            try:
                await self._post(receipt)
            except Exception:  # one bad URL must not stop the worker
                self._settle(receipt, ok=False)
                _tell(receipt, Attempt(receipt.tries, time.time(), time.time(), None, True))

    async def _post(self, receipt: Receipt) -> None:
        receipt.tries += 1
        started_at, status = time.time(), None
        try:
            status = await self._deliver(receipt)
            retryable, ok = status >= 500, status < 400
        except (aiohttp.ClientError, TimeoutError):
            retryable, ok = True, False
        again = retryable and receipt.tries < self.max_tries
        _tell(receipt, Attempt(receipt.tries, started_at, time.time(), status, not again))
        if again:
            self._later(self.retry_base_s * 2 ** (receipt.tries - 1), receipt)
            return
        self._settle(receipt, ok=ok)

    async def _deliver(self, receipt: Receipt) -> int:
        """Send one attempt of a receipt; returns the HTTP status."""
        assert self._session is not None, "start() the poster first"
        out = receipt.build(receipt.tries)
        # encoded=True: use the URL exactly as given, as signatures cover it.
        target = URL(out.url, encoded=True)
        async with self._session.request(
            out.method, target, data=out.body or None, headers=out.headers
        ) as response:
            await response.read()
            return response.status

    def _settle(self, receipt: Receipt, *, ok: bool) -> None:
        if receipt.generation != self._generation:
            return
        self.pending -= 1
        if ok:
            self.sent += 1
        else:
            self.failed += 1


def _tell(receipt: Receipt, attempt: Attempt) -> None:
    if receipt.observer is not None:
        receipt.observer(attempt)
