"""The admin API and metrics, mounted in the webhooks app. Every route needs the admin token.

    GET  /admin/messages/{id}              a record and its history
    GET  /admin/carriers                   every carrier x campaign breaker, with held counts
    POST /admin/carriers/{name}/pause      {"reason": ..., "by": ..., "campaign": ...}
    POST /admin/carriers/{name}/resume     {"by": ..., "campaign": ...}
    GET  /metrics                          Prometheus text: breaker states, held texts, counts

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
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker import keys
from worker.alerts import Alerter
from worker.bodies import read_limited
from worker.breaker import Breakers, Policy, State
from worker.carriers import normalise
from worker.holds import ALL_CAMPAIGNS, breaker_name
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
    def __init__(
        self,
        client: redis.Redis,
        carrier_policy: Policy,
        ns: str = keys.DEFAULT_NAMESPACE,
        *,
        alerter: Alerter | None = None,
    ):
        # Without configured URLs an operator's change is still logged.
        self.alerter = alerter if alerter is not None else Alerter([])
        self.store = Store(client, ns)
        self.carriers = Breakers(client, "carrier", carrier_policy, ns)
        self.providers = Breakers(client, "provider", Policy(), ns)

    async def message(self, request: Request) -> Response:
        msg_id = request.path_params["id"]
        record = await run_in_threadpool(self.store.get, msg_id)
        if record is None:
            return _error(404, f"no message with id {msg_id!r}")
        history = await run_in_threadpool(self.store.history, msg_id)
        return JSONResponse({"record": record, "history": history})

    async def carrier_list(self, _: Request) -> Response:
        return JSONResponse({"carriers": await run_in_threadpool(self._carrier_rows)})

    def _carrier_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name in self.carriers.names():
            row = self.carriers.status(name)
            row["held"] = int(self.carriers.client.llen(keys.hold(name, self.carriers.ns)))
            rows.append(row)
        return rows

    async def pause(self, request: Request) -> Response:
        return await self._change(request, "pause")

    async def resume(self, request: Request) -> Response:
        return await self._change(request, "resume")

    async def _change(self, request: Request, action: str) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        reason = str(body.get("reason") or "").strip()
        if action == "pause" and not reason:
            return _error(400, "reason: say why the carrier is paused")
        who = str(body.get("by") or "admin-api")[:100]
        campaign = body.get("campaign")
        name = breaker_name(normalise(request.path_params["name"]), str(campaign or ALL_CAMPAIGNS))
        if action == "pause":
            decision = await run_in_threadpool(self.carriers.pause, name, who=who, reason=reason)
        else:
            reason = reason or "resumed by operator"
            decision = await run_in_threadpool(self.carriers.resume, name, who=who, reason=reason)
        if decision.transition:
            # Posted in the background: a dead alert URL never delays the answer.
            self.alerter.announce(
                "carrier", name, decision.transition, reason, by=who, source="admin-api"
            )
        return JSONResponse(
            {"name": name, "state": decision.state.value, "changed": decision.allowed}
        )

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
        for breakers in (self.carriers, self.providers):
            for name in breakers.names():
                code = STATE_CODES[State(breakers.status(name)["state"])]
                state.labels(breakers.kind, name).set(code)
        for row in self._carrier_rows():
            held.labels(row["name"]).set(row["held"])
        for campaign, counts in self.store.stats().items():
            for status, count in counts.items():
                texts.labels(campaign, status).set(count)
        return generate_latest(registry)

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
