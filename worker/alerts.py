"""Alerts on every breaker open, pause, resume and close.

Each transition is logged (ERROR for open and pause, WARNING otherwise) and
POSTed as JSON, Slack-compatible (a ``text`` field), to every configured URL,
with retries, in the background: a failing alert URL never blocks sending.

Short-lived processes (the ``sendq`` command) use :func:`announce_now`, which
waits a bounded time for the posts, so the process neither exits before its
alert is attempted nor hangs on a dead URL.

The breaker-state gauge is not kept here: ``/metrics`` (worker/admin.py) reads
every breaker from Redis at scrape time, so a change made by any process shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from worker.breaker import AUTO
from worker.logs import mask_text, safe_url

log = structlog.get_logger("sendq.alerts")

DEFAULT_ATTEMPTS = 4
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_BACKOFF_S = 0.5
# Long enough for a slow chat webhook and a retry or two; short enough that an
# operator's pause never seems to hang on a dead alert URL.
DEFAULT_FLUSH_S = 5.0
DEFAULT_BY = AUTO  # a breaker's own transitions: breaker.lua's author for them
SEVERE = ("open", "paused")


def describe(kind: str, name: str) -> str:
    """``carrier verizon, campaign gotv``: readable in a chat channel."""
    if kind != "carrier" or ":" not in name:
        return f"{kind} {name}"
    carrier, _, campaign = name.partition(":")
    scope = "all campaigns" if campaign == "*" else f"campaign {campaign}"
    return f"carrier {carrier}, {scope}"


def alert_payload(
    kind: str, name: str, transition: str, why: str, by: str, extra: dict[str, Any]
) -> dict[str, Any]:
    before, _, after = transition.partition(">")
    # An operator's reason is free text: mask any phone number or secret in it.
    why = mask_text(why)
    text = f"sendq: {describe(kind, name)} is now {after} (was {before}), by {by}"
    return {
        "text": f"{text}: {why}" if why else text,
        "kind": kind,
        "name": name,
        "from": before,
        "to": after,
        "by": by,
        "why": why,
        **extra,
    }


class Alerter:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        backoff_s: float = DEFAULT_BACKOFF_S,
    ) -> None:
        self.urls = list(urls)
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[bool]] = set()

    def announce(
        self,
        kind: str,
        name: str,
        transition: str,
        why: str = "",
        *,
        by: str = DEFAULT_BY,
        **extra: Any,
    ) -> None:
        """Log now; post in the background (needs a running event loop when URLs are set)."""
        after = transition.partition(">")[2]
        level = log.error if after in SEVERE else log.warning
        level(
            "breaker changed",
            breaker=kind,
            name=name,
            transition=transition,
            by=by,
            why=why,
            **extra,
        )
        if not self.urls:
            return
        payload = alert_payload(kind, name, transition, why, by, extra)
        for url in self.urls:
            task = asyncio.create_task(self._post(url, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, payload: dict[str, Any]) -> bool:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, max=10),
            retry=retry_if_exception_type(httpx.HTTPError),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    (await self._client.post(url, json=payload)).raise_for_status()
        except Exception as exc:
            # Whatever goes wrong (a refused URL, a malformed one), an alert never
            # raises into sending. The URL's path is often its secret (Slack's): log the host only.
            log.warning(
                "alert could not be delivered",
                url=safe_url(url),
                error=type(exc).__name__,
            )
            return False
        return True

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait for alerts in flight, at most ``timeout_s``; True if every one was delivered.

        Posts still running at the deadline are cancelled and logged.
        """
        tasks = set(self._tasks)
        if not tasks:
            return True
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("alerts abandoned unconfirmed", pending=len(pending), waited_s=timeout_s)
        return not pending and all(t.result() for t in done)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def announce_now(
    urls: Sequence[str],
    kind: str,
    changes: Sequence[tuple[str, str]],
    why: str = "",
    *,
    by: str = DEFAULT_BY,
    flush_s: float = DEFAULT_FLUSH_S,
    **extra: Any,
) -> bool:
    """Announce ``(name, transition)`` changes from a process about to exit.

    Waits at most ``flush_s`` for the posts; True if every alert was delivered.
    """

    async def run() -> bool:
        alerter = Alerter(urls)
        try:
            for name, transition in changes:
                alerter.announce(kind, name, transition, why, by=by, **extra)
            return await alerter.drain(flush_s)
        finally:
            await alerter.aclose()

    return asyncio.run(run())
