"""Alerts on every breaker open, pause, resume and close.

Each transition is logged (ERROR for open and pause, WARNING otherwise) and
POSTed as JSON, Slack-compatible (a ``text`` field), to every configured URL,
with retries, in the background: a failing alert URL never blocks sending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from worker.logs import mask_text, safe_url

log = structlog.get_logger("sendq.alerts")

DEFAULT_ATTEMPTS = 4
DEFAULT_TIMEOUT_S = 5.0
SEVERE = ("open", "paused")


class Alerter:
    def __init__(self, urls: Sequence[str], *, attempts: int = DEFAULT_ATTEMPTS) -> None:
        self.urls = list(urls)
        self.attempts = attempts
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def announce(self, kind: str, name: str, transition: str, why: str = "", **extra: Any) -> None:
        """Log now; post in the background."""
        before, _, after = transition.partition(">")
        level = log.error if after in SEVERE else log.warning
        level("breaker changed", breaker=kind, name=name, transition=transition, why=why, **extra)
        if not self.urls:
            return
        payload = {
            "text": f"sendq: {kind} {name} is now {after} (was {before}). {why}".strip(),
            "kind": kind,
            "name": name,
            "from": before,
            "to": after,
            "why": why,
            **extra,
        }
        for url in self.urls:
            task = asyncio.create_task(self._post(url, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, payload: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT_S)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.5, max=10),
            retry=retry_if_exception_type(httpx.HTTPError),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    (await self._client.post(url, json=payload)).raise_for_status()
        except httpx.HTTPError as exc:
            log.warning(
                "alert could not be delivered",
                url=safe_url(url),
                error=mask_text(type(exc).__name__),
            )

    async def drain(self) -> None:
        """Wait for alerts in flight (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
