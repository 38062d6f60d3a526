"""The webhook app: provider delivery receipts (starlette, served by uvicorn).

``POST /webhooks/{provider}/status``: the provider's signature is checked
against the URL sendq gave it (``webhooks.public_url`` + path + query), so the
app can sit behind a proxy. A forged, unsigned or malformed receipt gets a 4xx
and changes nothing; duplicates and out-of-order receipts are harmless, since
every change is a compare-and-set and a final state is never undone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.admin import Admin
from worker.alerts import Alerter
from worker.bodies import read_limited
from worker.breaker import FAILURE_WEIGHT, SUCCESS_WEIGHT, AsyncBreakers
from worker.carriers import UNKNOWN as UNKNOWN_CARRIER
from worker.carriers import CarrierResolver
from worker.carriers import normalise as normalise_carrier
from worker.holds import breaker_name
from worker.models import Category, Status
from worker.providers.base import InvalidWebhook, Provider, Receipt, WebhookRequest
from worker.store import AsyncStore

log = structlog.get_logger("sendq.webhooks")

DEFAULT_MAX_BODY_BYTES = 64 * 1024
FINAL_RECEIPT_FROM = [Status.SENDING, Status.SENT, Status.QUEUED]


@dataclass
class CarrierFeed:
    """Receipts feed the carrier breakers: filtering often shows only in receipts."""

    breakers: AsyncBreakers
    alerter: Alerter | None = None
    ambiguous_weight: float = 0.3

    def weight(self, receipt: Receipt) -> int | None:
        if receipt.status == Status.DELIVERED:
            return SUCCESS_WEIGHT
        if receipt.category is Category.CARRIER_BLOCK:
            return FAILURE_WEIGHT
        if receipt.category is Category.AMBIGUOUS:
            return int(self.ambiguous_weight * FAILURE_WEIGHT)
        return None

    async def feed(self, record: Mapping[str, str], receipt: Receipt) -> None:
        weight = self.weight(receipt)
        if weight is None:
            return
        name = breaker_name(record.get("carrier") or UNKNOWN_CARRIER, record.get("campaign", ""))
        decision = await self.breakers.record(name, weight, receipt.error_code or "")
        if decision.transition and self.alerter is not None:
            self.alerter.announce(
                "carrier", name, decision.transition, decision.why, source="receipt"
            )


def create_app(
    *,
    store: AsyncStore,
    providers: Mapping[str, Provider],
    public_url: str,
    carrier_feed: CarrierFeed | None = None,
    carriers: CarrierResolver | None = None,
    admin: Admin | None = None,
    admin_token: str | None = None,
) -> Starlette:
    async def status(request: Request) -> Response:
        provider = providers.get(request.path_params["provider"])
        if provider is None:
            return _error(404, "unknown provider")
        body = await read_limited(request, DEFAULT_MAX_BODY_BYTES)
        if body is None:
            return _error(413, f"body larger than {DEFAULT_MAX_BODY_BYTES} bytes")
        hook = WebhookRequest(
            url=_signed_url(public_url, request),
            headers=request.headers,
            body=body,
            content_type=request.headers.get("content-type", ""),
        )
        if not provider.verify_signature(hook):
            log.warning("receipt refused: bad or missing signature", provider=provider.name)
            return _error(403, "invalid signature")
        try:
            receipts = provider.parse_receipts(hook)
        except InvalidWebhook as exc:
            return _error(400, str(exc))
        results = [await _apply(store, provider.name, r, carrier_feed, carriers) for r in receipts]
        if len(results) == 1:
            return JSONResponse(results[0], status_code=results[0].pop("http_status", 200))
        return JSONResponse({"receipts": results})

    async def health(_: Request) -> Response:
        await store.client.ping()
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        for provider in providers.values():
            await provider.aclose()
        await store.client.aclose()

    return Starlette(
        routes=[
            # Vonage can deliver receipts by GET (its account setting); the others POST.
            Route("/webhooks/{provider}/status", status, methods=["GET", "POST"]),
            Route("/healthz", health, methods=["GET"]),
            *(admin.routes(admin_token) if admin is not None else []),
        ],
        lifespan=lifespan,
    )


async def _apply(
    store: AsyncStore,
    provider: str,
    receipt: Receipt,
    carrier_feed: CarrierFeed | None,
    carriers: CarrierResolver | None,
) -> dict[str, Any]:
    if receipt.message_id is None:
        return {"error": "the receipt carries no message id (mid)", "http_status": 400}
    if receipt.status == Status.SENT:
        allowed: list[Status] = [Status.SENDING]
    elif receipt.status in (Status.DELIVERED, Status.UNDELIVERED):
        allowed = FINAL_RECEIPT_FROM
    else:
        return {"applied": False, "reason": "intermediate status"}
    fields = {
        "provider_message_id": receipt.provider_message_id,
        "receipt_error_code": receipt.error_code,
        "receipt_category": receipt.category.value,
    }
    if receipt.carrier:
        # Raw names ("AT&T Wireless") would split one carrier's breaker in two.
        fields["carrier"] = normalise_carrier(receipt.carrier)
    why = f"receipt from {provider}" + (f": {receipt.error_code}" if receipt.error_code else "")
    done = await store.transition(
        receipt.message_id,
        allowed,
        receipt.status,
        reason=why,
        fields=fields,
        return_record=True,
    )
    if done.ok and done.record is not None and carrier_feed is not None:
        # Only the receipt that changed the state counts: duplicates never do.
        await carrier_feed.feed(done.record, receipt)
    if done.ok and done.record is not None and carriers is not None and receipt.carrier:
        # The next text to this number goes under the carrier the receipt named
        # (a ported number moves), not a lookup that may be 30 days old.
        await carriers.remember(done.record.get("to", ""), receipt.carrier)
    if done.missing:
        # Answer 200 so the provider stops retrying a text we never had.
        log.warning("receipt for an unknown message", message_id=receipt.message_id)
        return {"applied": False, "reason": "unknown message"}
    if done.ok and receipt.category is not Category.OK:
        log.warning(
            "text undelivered",
            message_id=receipt.message_id,
            provider=provider,
            error_code=receipt.error_code,
            category=receipt.category.value,
        )
    return {"applied": done.ok, "status": done.current or receipt.status}


def _signed_url(public_url: str, request: Request) -> str:
    query = request.url.query
    return f"{public_url}{request.url.path}" + (f"?{query}" if query else "")


def _error(status_code: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status_code)


def app_from_settings() -> Starlette:
    """The app ``sendq webhooks`` serves.

    Also ``uvicorn --factory worker.webhooks:app_from_settings``.
    """
    from worker import logs, runtime
    from worker.settings import get_settings

    settings = get_settings()
    logs.configure(settings.log_level)
    import redis

    from worker.broker import redis_url

    client = runtime.async_redis(settings)
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    return create_app(
        store=AsyncStore(client),
        providers=runtime.providers(settings),
        public_url=settings.webhooks.public_url,
        carrier_feed=runtime.carrier_feed(settings, client),
        carriers=CarrierResolver(client, cache_ttl_s=settings.carriers.cache_ttl_s),
        admin=Admin(
            redis.Redis.from_url(redis_url(settings)),
            runtime.breaker_policy(settings.breakers.carrier),
            alerter=Alerter(settings.alerts.urls),
        ),
        admin_token=token,
    )
