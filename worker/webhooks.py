"""The webhook app: delivery receipts and inbound texts (starlette, served by uvicorn).

``POST /webhooks/{provider}/status`` (receipts) and ``/webhooks/{provider}/inbound``
(texts people send us; Vonage may use GET for both): the provider's signature
is checked against the URL sendq gave it (``webhooks.public_url`` + path +
query), so the app can sit behind a proxy. Some providers post receipts and
inbound texts to one URL (a Bandwidth application, a Telnyx messaging
profile), so each route asks the provider which it got and handles either.
A forged, unsigned or malformed request gets a 4xx and changes nothing; a
request signed with a key sendq does not hold gets 403 and a log line naming
the key id. Duplicates and out-of-order receipts are harmless, since every
change is a compare-and-set and a final state is never undone; an inbound
text posted twice is recorded and acted on once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.bodies import read_limited
from worker.callbacks import attempt_of
from worker.carriers import normalise as normalise_carrier
from worker.errors import InvalidWebhook, UnknownSigningKey
from worker.exposure import AsyncExposure, receipt_release
from worker.hearing import Hearing, Orgs, Reading, Replies
from worker.models import RECEIPT_DUE_FIELD, Category, Status
from worker.providers.base import Provider, Receipt, WebhookRequest
from worker.sendpath.config import DEFAULT_RECEIPT_TIMEOUT_MS
from worker.sendpath.feedback import CarrierFeed
from worker.sendpath.optout_feed import OptoutFeed
from worker.store import AsyncStore, ReceiptResult
from worker.store import now_ms as store_now_ms
from worker.watch.counters import WatchCounters
from worker.watch.model import attempt_carrier

if TYPE_CHECKING:
    from worker.admin import Admin

log = structlog.get_logger("sendq.webhooks")

DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_ORG = "default"
# Receipts the watch counts toward delivery (the rest, e.g. "sent", only prove a send).
FINAL_RECEIPTS = (Status.DELIVERED, Status.UNDELIVERED)


def create_app(
    *,
    store: AsyncStore,
    providers: Mapping[str, Provider],
    public_url: str,
    feed: CarrierFeed,
    hearing: Hearing | None = None,
    optout_feed: OptoutFeed | None = None,
    admin: Admin | None = None,
    admin_token: str | None = None,
    receipt_timeout_ms: int = DEFAULT_RECEIPT_TIMEOUT_MS,
    exposure: AsyncExposure | None = None,
    watch: WatchCounters | None = None,
) -> Starlette:
    """The app; the composition root passes every part. Without ``hearing`` and
    ``optout_feed`` (a test of receipts alone), one organisation and no replies."""
    hearing = hearing or _plain_hearing(store)
    optout_feed = optout_feed or OptoutFeed(hearing.optouts, lambda _: hearing.orgs.default_org)
    receipts = Receipts(
        store,
        providers,
        public_url,
        feed,
        hearing,
        optout_feed,
        receipt_timeout_ms,
        exposure,
        watch,
    )

    async def health(_: Request) -> Response:
        await store.ping()
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        for provider in providers.values():
            await provider.aclose()
        await store.aclose()

    return Starlette(
        routes=[
            # Vonage can deliver receipts by GET (its account setting); the others POST.
            Route("/webhooks/{provider}/status", receipts.status, methods=["GET", "POST"]),
            Route("/webhooks/{provider}/inbound", receipts.status, methods=["GET", "POST"]),
            Route("/healthz", health, methods=["GET"]),
            *(admin.routes(admin_token) if admin is not None else []),
        ],
        lifespan=lifespan,
    )


def _plain_hearing(store: AsyncStore) -> Hearing:
    from worker.inbound_log import AsyncInboundLog
    from worker.optouts import AsyncOptoutList

    return Hearing(
        AsyncInboundLog(store.client, store.ns),
        AsyncOptoutList(store.client, store.ns),
        orgs=Orgs(DEFAULT_ORG),
        reading=Reading(),
        replies=Replies(),
        send_reply=None,
    )


class Receipts:
    """Both routes: check the signature, then apply each receipt to its attempt, or
    hear each inbound text."""

    def __init__(
        self,
        store: AsyncStore,
        providers: Mapping[str, Provider],
        public_url: str,
        feed: CarrierFeed,
        hearing: Hearing,
        optout_feed: OptoutFeed,
        receipt_timeout_ms: int = DEFAULT_RECEIPT_TIMEOUT_MS,
        exposure: AsyncExposure | None = None,
        watch: WatchCounters | None = None,
    ) -> None:
        self.watch = watch
        self.receipt_timeout_ms = receipt_timeout_ms
        # A final receipt gives its text's exposure slot back (None or off: no call).
        self.exposure = exposure if exposure is not None and exposure.enabled else None
        self.store = store
        self.providers = providers
        self.public_url = public_url
        self.feed = feed
        self.hearing = hearing
        self.optout_feed = optout_feed

    async def status(self, request: Request) -> Response:
        provider = self.providers.get(request.path_params["provider"])
        if provider is None:
            return _error(404, "unknown provider")
        body = await read_limited(request, DEFAULT_MAX_BODY_BYTES)
        if body is None:
            return _error(413, f"body larger than {DEFAULT_MAX_BODY_BYTES} bytes")
        hook = WebhookRequest(
            url=_signed_url(self.public_url, request),
            headers=request.headers,
            body=body,
            content_type=request.headers.get("content-type", ""),
        )
        try:
            signed = provider.verify_signature(hook)
        except UnknownSigningKey as exc:
            log.warning(
                "webhook refused: signed with a key sendq does not hold",
                provider=provider.name,
                key_id=exc.key_id,
            )
            return _error(403, str(exc))
        except InvalidWebhook as exc:
            return _error(403, f"invalid signature: {exc}")
        if not signed:
            log.warning("webhook refused: bad or missing signature", provider=provider.name)
            return _error(403, "invalid signature")
        try:
            if provider.is_inbound(hook):
                return await self._inbound(provider, hook)
            events = provider.parse_events(hook)
        except InvalidWebhook as exc:
            return _error(400, str(exc))
        url_attempt = attempt_of(request.query_params)
        return _answer(await self._receipts(provider, events, url_attempt))

    async def _receipts(
        self,
        provider: Provider,
        events: list[tuple[int, Receipt | InvalidWebhook]],
        url_attempt: int | None,
    ) -> list[dict[str, Any]]:
        return [
            {"index": index, **await self._one(provider.name, parsed, url_attempt)}
            for index, parsed in events
        ]

    async def _watch_receipt(self, msg_id: str, done: ReceiptResult, status: str) -> None:
        """A receipt proves its attempt went out: counted sent (once: the send path's
        answer may have been lost, a dropped connection), and a final one counted with
        the texts sent when its attempt was made."""
        record = done.record or {}
        sent_ms = int(record.get(f"a{done.attempt}:at_ms") or 0)
        if self.watch is None or not sent_ms or not done.attempt:
            return
        carrier = attempt_carrier(record, done.attempt)
        campaign = record.get("campaign", "")
        final = status == Status.DELIVERED if status in FINAL_RECEIPTS else None
        await self.watch.sent_once(
            msg_id, done.attempt, carrier, campaign, sent_ms=sent_ms, final=final
        )

    async def _inbound(self, provider: Provider, hook: WebhookRequest) -> Response:
        """Inbound texts, and any receipts posted in the same batch (Bandwidth)."""
        texts = provider.parse_inbound(hook)
        results = []
        for index, parsed in texts:
            if isinstance(parsed, InvalidWebhook):
                log.warning("inbound text refused", provider=provider.name, reason=str(parsed))
                results.append({"index": index, "error": str(parsed), "http_status": 400})
                continue
            results.append({"index": index, **await self.hearing.take(provider.name, parsed)})
        if provider.batches_events:
            # One array may hold receipts too; answered 2xx, it is never posted again.
            taken = {index for index, _ in texts}
            try:
                events = [e for e in provider.parse_events(hook) if e[0] not in taken]
            except InvalidWebhook:
                events = []  # nothing but inbound texts
            results += await self._receipts(provider, events, None)
        return _answer(sorted(results, key=lambda r: int(r["index"])), "events")

    async def _one(
        self, provider: str, parsed: Receipt | InvalidWebhook, url_attempt: int | None
    ) -> dict[str, Any]:
        if isinstance(parsed, InvalidWebhook):
            log.warning("receipt event refused", provider=provider, reason=str(parsed))
            return {"error": str(parsed), "http_status": 400}
        if parsed.message_id is None:
            return {"error": "the receipt carries no message id (mid)", "http_status": 400}
        if parsed.status not in (Status.SENT, *FINAL_RECEIPTS):
            return {"applied": False, "reason": "intermediate status"}
        attempt = parsed.attempt if parsed.attempt is not None else url_attempt
        done = await self.store.apply_receipt(
            parsed.message_id,
            provider=provider,
            attempt=attempt,
            provider_message_id=parsed.provider_message_id or "",
            status=parsed.status,
            reason=f"receipt from {provider}"
            + (f": {parsed.error_code}" if parsed.error_code else ""),
            fields=_receipt_fields(parsed, self.receipt_timeout_ms),
        )
        return await self._after(provider, parsed, done)

    async def _after(self, provider: str, receipt: Receipt, done: ReceiptResult) -> dict[str, Any]:
        if done.refused is not None:
            log.warning("receipt refused", message_id=receipt.message_id, reason=done.refused)
            return {"error": done.refused, "http_status": 403}
        if done.missing:
            # Answer 200 so the provider stops retrying a text we never had.
            log.warning("receipt for an unknown message", message_id=receipt.message_id)
            return {"applied": False, "reason": "unknown message"}
        if done.applied and done.record is not None:
            # Only the receipt that changed the state counts: duplicates never do. The
            # carrier was written before the HTTP call, so the order of the worker's
            # write and the receipt does not matter.
            await self.feed.receipt(
                done.record, receipt.status, receipt.category, receipt.error_code
            )
            # The next text to this number goes under the carrier the receipt named
            # (a ported number moves), not a lookup that may be 30 days old.
            await self.feed.learn_carrier(done.record.get("to", ""), receipt.carrier)
            await self._watch_receipt(receipt.message_id or "", done, receipt.status)
            outcome = receipt_release(receipt.status, receipt.category)
            if outcome is not None and self.exposure is not None:
                await self.exposure.release_record(receipt.message_id or "", done.record, outcome)
            await self.optout_feed.heard(
                done.record,
                receipt.category,
                provider=provider,
                code=receipt.error_code,
                receipt=True,
            )
        if done.applied and receipt.category is not Category.OK:
            log.warning(
                "text undelivered",
                message_id=receipt.message_id,
                provider=provider,
                error_code=receipt.error_code,
                category=receipt.category.value,
            )
        return {"applied": done.applied, "status": done.current or receipt.status}


def _answer(results: list[dict[str, Any]], plural: str = "receipts") -> JSONResponse:
    """One event: its own answer. A batch: 200 with one result per event as
    soon as any event was taken, since a provider retries the whole batch on
    anything else and would post the applied events again; the refused
    ones are named there by index and reason. 4xx only when none was taken."""
    statuses = [result.pop("http_status", 200) for result in results]
    if len(results) == 1:
        del results[0]["index"]
        return JSONResponse(results[0], status_code=statuses[0])
    if any(code < 400 for code in statuses):
        return JSONResponse({plural: results})
    refused = "; ".join(f"event {r['index']}: {r['error']}" for r in results)
    return JSONResponse(
        {"error": f"no event could be applied: {refused}", plural: results},
        status_code=statuses[0],
    )


def _signed_url(public_url: str, request: Request) -> str:
    query = request.url.query
    return f"{public_url}{request.url.path}" + (f"?{query}" if query else "")


def _error(status_code: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status_code)


def _receipt_fields(receipt: Receipt, receipt_timeout_ms: int) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "receipt_error_code": receipt.error_code,
        "receipt_category": receipt.category.value,
    }
    if receipt.status == Status.SENT:
        # Handed on, not final: the final receipt is due within receipts.timeout_s.
        fields[RECEIPT_DUE_FIELD] = store_now_ms() + receipt_timeout_ms
    if receipt.carrier:
        # Raw names ("AT&T Wireless") would split one carrier's breaker in two.
        fields["carrier"] = normalise_carrier(receipt.carrier)
    return fields
