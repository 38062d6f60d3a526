"""The admin API and metrics, mounted in the webhooks app. Every route needs the admin token.

    GET  /admin/messages/{id}              a record and its history
    GET  /admin/carriers                   every carrier x campaign breaker, with held counts
    POST /admin/carriers/{name}/pause      {"reason": ..., "by": ..., "campaign": ...}
    POST /admin/carriers/{name}/resume     {"by": ..., "campaign": ...}
    GET  /metrics                          Prometheus text: breaker states, held texts, counts
                                           (texts by status; held texts by reason)

Which breakers a pause or resume touches is worker/operations.py's rule, the CLI's too:
a pause without a campaign pauses the carrier-wide breaker; a resume without one resumes
it and every campaign breaker of the carrier. The answer is the named breaker's
``{"name", "state", "changed"}``; a resume that reached more than one adds ``"breakers"``,
each of them in the same form.

Each pause or resume that changes a breaker is logged and alerted (worker/alerts.py),
like the workers' automatic changes. ``/metrics`` reads every breaker from Redis at
scrape time, so a change made by any process (``sendq carriers pause``) shows at once.

The token is ``SENDQ_ADMIN_TOKEN``, sent as ``Authorization: Bearer <token>``.
With no token configured the admin routes answer 503: they are never open.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.bodies import read_limited
from worker.breaker import State
from worker.counts import REPORTED_HELD_FOR, REPORTED_STATUSES, split
from worker.errors import MissingReason
from worker.operations import Operations
from worker.store import Store

STATE_CODES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2, State.PAUSED: 3}
# Admin bodies are a reason and a name or two. The webhook app's limit
# (webhooks.DEFAULT_MAX_BODY_BYTES, 64 KiB, sized for batched receipts) is not
# imported: webhooks.py imports this module.
DEFAULT_MAX_BODY_BYTES = 16 * 1024
Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def guarded(token: str | None, handler: Handler) -> Handler:
    async def check(request: Request) -> Response:
        if not token:
            return _error(503, "the admin API is disabled: set SENDQ_ADMIN_TOKEN")
        given = request.headers.get("authorization", "")
        expected = f"Bearer {token}"
        if not given.isascii() or not hmac.compare_digest(given.encode(), expected.encode()):
            return _error(401, "a valid admin token is required")
        return await handler(request)

    return check


class Admin:
    """The admin routes: thin callers of ``Operations`` (the rules) and ``Store`` (records)."""

    def __init__(self, operations: Operations, store: Store) -> None:
        self.operations = operations
        self.store = store

    async def message(self, request: Request) -> Response:
        msg_id = request.path_params["id"]
        record = await run_in_threadpool(self.store.get, msg_id)
        if record is None:
            return _error(404, f"no message with id {msg_id!r}")
        history = await run_in_threadpool(self.store.history, msg_id)
        return JSONResponse({"record": record, "history": history})

    async def carrier_list(self, _: Request) -> Response:
        rows = await run_in_threadpool(self.operations.carrier_status)
        return JSONResponse({"carriers": rows})

    async def pause(self, request: Request) -> Response:
        return await self._change(request, pause=True)

    async def resume(self, request: Request) -> Response:
        return await self._change(request, pause=False)

    async def _change(self, request: Request, *, pause: bool) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        reason = str(body.get("reason") or "").strip()
        who = str(body.get("by") or "admin-api")[:100]
        campaign = body.get("campaign")
        carrier = request.path_params["name"]
        act = partial(
            self.operations.pause_carrier if pause else self.operations.resume_carrier,
            carrier,
            reason=reason,
            who=who,
            campaign=str(campaign) if campaign else None,
        )
        try:
            outcome = await run_in_threadpool(act)
        except MissingReason:
            return _error(400, "reason: say why the carrier is paused")
        # Posted in the background: a dead alert URL never delays the answer.
        self.operations.announce(outcome, source="admin-api")
        # The breaker the request names (the carrier-wide one, or the campaign's)
        # answers, as it always has; a resume that also reached campaign breakers
        # lists every one it touched.
        answer = outcome.changes[0].as_dict()
        if len(outcome.changes) > 1:
            answer["breakers"] = [c.as_dict() for c in outcome.changes]
        return JSONResponse(answer)

    async def metrics(self, _: Request) -> Response:
        return Response(await run_in_threadpool(self._metrics), media_type=CONTENT_TYPE_LATEST)

    def _metrics(self) -> bytes:
        registry = CollectorRegistry()
        state = Gauge(
            "sendq_breaker_state",
            "0 closed, 1 half-open, 2 open, 3 paused",
            ["kind", "name"],
            registry=registry,
        )
        held = Gauge(
            "sendq_held_texts", "Texts held for a carrier x campaign", ["name"], registry=registry
        )
        texts = Gauge(
            "sendq_texts", "Texts by campaign and status", ["campaign", "status"], registry=registry
        )
        carriers = self.operations.carrier_status()
        # Providers with a breaker record only, as for carriers: one never used has no state.
        providers = self.operations.provider_status(with_routed=False)
        for kind, rows in (("carrier", carriers), ("provider", providers)):
            for row in rows:
                state.labels(kind, row["name"]).set(STATE_CODES[State(row["state"])])
        for row in carriers:
            held.labels(row["name"]).set(row["held"])
        self._counts(registry, texts)
        events = Gauge(
            "sendq_events",
            "Send-path counters: possible_doubles, unconfirmed, takeovers, ...",
            ["name"],
            registry=registry,
        )
        for name, value in self.store.counters().items():
            events.labels(name).set(value)
        return generate_latest(registry)

    def _counts(self, registry: CollectorRegistry, texts: Gauge) -> None:
        """Texts by campaign and status, and held texts by reason: the counts an
        operator reports on (held, suppressed, expired, held for quiet hours) are
        present for every campaign, zero included, so their series never go missing."""
        held_for = Gauge(
            "sendq_held_for",
            "Texts held now, by campaign and reason (quiet_hours, carrier)",
            ["campaign", "reason"],
            registry=registry,
        )
        counts = split(self.store.stats_and_reasons())
        for campaign in counts.campaigns():
            by_status = {s: 0 for s in REPORTED_STATUSES} | counts.by_status.get(campaign, {})
            for status, count in by_status.items():
                texts.labels(campaign, status).set(count)
            by_reason = {r: 0 for r in REPORTED_HELD_FOR} | counts.held_for.get(campaign, {})
            for reason, count in by_reason.items():
                held_for.labels(campaign, reason).set(count)

    def routes(self, token: str | None) -> list[Route]:
        return [
            Route("/admin/messages/{id}", guarded(token, self.message), methods=["GET"]),
            Route("/admin/carriers", guarded(token, self.carrier_list), methods=["GET"]),
            Route("/admin/carriers/{name}/pause", guarded(token, self.pause), methods=["POST"]),
            Route("/admin/carriers/{name}/resume", guarded(token, self.resume), methods=["POST"]),
            Route("/metrics", guarded(token, self.metrics), methods=["GET"]),
        ]


async def _read_limited(request: Request, limit: int) -> bytes | Response:
    """The body, read only while it stays within ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        return _error(400, "Content-Length must be a number of bytes")
    raw = await read_limited(request, limit)
    if raw is None:
        return _error(413, f"the body is larger than the admin API's limit of {limit} bytes")
    return raw


async def _json_body(request: Request) -> dict[str, Any] | Response:
    raw = await _read_limited(request, DEFAULT_MAX_BODY_BYTES)
    if isinstance(raw, Response):
        return raw
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the body must be a JSON object")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    return body
