"""The admin API and metrics, mounted in the webhooks app. Every route needs the admin token.

    GET  /admin/messages/{id}              a record and its history
    GET  /admin/carriers                   every carrier x campaign breaker, with held counts
    POST /admin/carriers/{name}/pause      {"reason": ..., "by": ..., "campaign": ...}
    POST /admin/carriers/{name}/resume     {"by": ..., "campaign": ...}
    GET  /admin/watch                      the deliverability watch: every carrier x campaign's
                                           signals, rates and tests (PairStatus.as_dict())
    GET  /metrics                          Prometheus text: breaker states, held texts, counts
                                           (texts by status; held texts by reason), and the
                                           watch's rates, tests and trips (sendq_watch_*)

Which breakers a pause or resume touches is worker/operations.py's rule, the CLI's too:
a pause without a campaign pauses the carrier-wide breaker; a resume without one resumes
it and every campaign breaker of the carrier. The answer is the named breaker's
``{"name", "state", "changed"}``; a resume that reached more than one adds ``"breakers"``,
each of them in the same form.

Each pause or resume that changes a breaker is logged and alerted (worker/alerts.py),
like the workers' automatic changes. ``/metrics`` reads every breaker from Redis at
scrape time, so a change made by any process (``sendq carriers pause``) shows at once.

The watch's series, per carrier x campaign and signal (delivery, receipts,
replies, optouts), read from Redis at scrape time as the breakers are:

    sendq_watch_rate{carrier,campaign,signal,of}         of = carrier | others | baseline;
                                                         a rate with no texts behind it is
                                                         left out, not NaN
    sendq_watch_texts{carrier,campaign,signal}           the carrier's texts behind its rate
    sendq_watch_statistic{carrier,campaign,signal,reference}   each test's CUSUM statistic,
    sendq_watch_threshold{...}, sendq_watch_p_value{...}       its trip threshold and p-value
                                                         (reference = others | baseline)
    sendq_watch_tripped{carrier,campaign,signal}         1 when the signal's test says trip

The token is ``SENDQ_ADMIN_TOKEN``, sent as ``Authorization: Bearer <token>``.
With no token configured the admin routes answer 503: they are never open.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

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
from worker.watch.sequential import Decision

if TYPE_CHECKING:
    from worker.watch import PairStatus

STATE_CODES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2, State.PAUSED: 3}
# Admin bodies are a reason and a name or two. The webhook app's limit
# (webhooks.DEFAULT_MAX_BODY_BYTES, 64 KiB, sized for batched receipts) is not
# imported: webhooks.py imports this module.
DEFAULT_MAX_BODY_BYTES = 16 * 1024
Handler = Callable[[Request], Awaitable[Response]]
# The watch's status now (worker.wiring.Root.watch_status): one synchronous read.
WatchSource = Callable[[], Sequence["PairStatus"]]
PAIR_LABELS = ["carrier", "campaign", "signal"]


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
    """The admin routes: thin callers of ``Operations`` (the rules), ``Store`` (records)
    and the watch's status (None: no watch in this app, and no watch series)."""

    def __init__(
        self, operations: Operations, store: Store, watch: WatchSource | None = None
    ) -> None:
        self.operations = operations
        self.store = store
        self.watch_source = watch

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

    async def watch(self, _: Request) -> Response:
        if self.watch_source is None:
            return _error(503, "the deliverability watch is not part of this admin app")
        pairs = await run_in_threadpool(self.watch_source)
        return JSONResponse({"watch": [p.as_dict() for p in pairs]})

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
        if self.watch_source is not None:
            _watch_metrics(registry, self.watch_source())
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
            Route("/admin/watch", guarded(token, self.watch), methods=["GET"]),
            Route("/metrics", guarded(token, self.metrics), methods=["GET"]),
        ]


def _watch_metrics(registry: CollectorRegistry, pairs: Sequence[PairStatus]) -> None:
    """The watch's rates, texts, tests and trips: the series the docstring lists."""
    rate = Gauge(
        "sendq_watch_rate",
        "A signal's rate over the watch's window (delivery: delivered share; receipts: "
        "overdue share; replies, optouts: per delivered), of the carrier, the campaign's "
        "other carriers, or the carrier's own baseline",
        [*PAIR_LABELS, "of"],
        registry=registry,
    )
    texts = Gauge(
        "sendq_watch_texts",
        "The carrier's texts behind a signal's rate",
        PAIR_LABELS,
        registry=registry,
    )
    tripped = Gauge(
        "sendq_watch_tripped",
        "1 when the signal's test says the carrier is worse (trip), else 0",
        PAIR_LABELS,
        registry=registry,
    )
    tests = {
        name: Gauge(
            f"sendq_watch_{name}", help_text, [*PAIR_LABELS, "reference"], registry=registry
        )
        for name, help_text in (
            ("statistic", "A test's CUSUM statistic (nats of evidence that the carrier is worse)"),
            ("threshold", "The statistic at which the test trips: log(B / alpha)"),
            ("p_value", "The test's always-valid p-value, min(1, B * e^-statistic)"),
        )
    }
    for pair in pairs:
        for s in pair.signals:
            labels = (pair.carrier, pair.campaign, s.signal)
            for of, value in (
                ("carrier", s.rate),
                ("others", s.others_rate),
                ("baseline", s.baseline_rate),
            ):
                if value is not None:
                    rate.labels(*labels, of).set(value)
            texts.labels(*labels).set(s.texts)
            tripped.labels(*labels).set(1 if s.decision is Decision.TRIP else 0)
            for c in s.comparisons:
                tests["statistic"].labels(*labels, c.reference).set(c.statistic)
                tests["threshold"].labels(*labels, c.reference).set(c.threshold)
                tests["p_value"].labels(*labels, c.reference).set(c.p_value)


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
