"""The Telnyx adapter, checked against Telnyx's official Python SDK (telnyx 4.x).

The SDK is the reference: the request our adapter sends must be the one
``client.messages.send`` puts on the wire, and our webhook verification must
accept what ``telnyx.lib.webhook_verification.verify_webhook_signature`` (what
``client.webhooks.unwrap`` runs) accepts, for receipts signed with a freshly
generated ed25519 key pair. Receipt fixtures are checked to parse as the SDK's
own ``DeliveryUpdateWebhookEvent``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import telnyx
import telnyx.lib  # applies the SDK's ed25519 ``unwrap``
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from telnyx.lib import webhook_verification as sdk_webhooks
from telnyx.resources.webhooks import WebhooksResource
from telnyx.types.delivery_update_webhook_event import DeliveryUpdateWebhookEvent

from worker.errors import (
    ConfigError,
    InvalidWebhook,
    ProviderError,
    ProviderTimeout,
    ProviderUncertain,
    ProviderUnreachable,
)
from worker.models import Category, Status
from worker.providers.base import OutboundText, SendResult, WebhookRequest
from worker.providers.telnyx import (
    DEFAULT_TOLERANCE_S,
    ERROR_CATEGORIES,
    TelnyxProvider,
    classify,
    ratelimit_reset_s,
    signed_bytes,
)

API = "https://api.telnyx.com"
API_KEY = "KEY0123456789ABCDEF_abcdefghijklmnop"
JSON = "application/json"
# As worker/callbacks.py writes it: sendq's message id and the attempt number.
CALLBACK = "https://hooks.example.com/webhooks/telnyx/status?mid=msg-0001&att=1"
NOW = 1_700_000_000
MESSAGE_ID = "40318c1b-1b5a-4f5b-9b34-58d6d3f0c2a1"
CARRIER = "T-MOBILE USA, INC."
# SDK fields (from_ is sent as "from"), and the JSON names they become.
WIRE_FIELDS = {"from", "to", "text", "webhook_url"}

# Fresh keys for every run: nothing here was signed by anything but this test.
PRIVATE_KEY = Ed25519PrivateKey.generate()
OTHER_PRIVATE_KEY = Ed25519PrivateKey.generate()


def b64_public(private: Ed25519PrivateKey) -> str:
    """The public key in Mission Control's form: base64 of the 32 raw bytes."""
    raw = private.public_key().public_bytes_raw()
    return base64.b64encode(raw).decode("ascii")


PUBLIC_KEY = b64_public(PRIVATE_KEY)
OTHER_PUBLIC_KEY = b64_public(OTHER_PRIVATE_KEY)

Handler = Callable[[httpx.Request], httpx.Response]


# -- helpers -----------------------------------------------------------------------------------


def queued(carrier: str | None = CARRIER) -> dict[str, Any]:
    """Telnyx's 200 answer to a send (SDK MessageSendResponse)."""
    recipient: dict[str, Any] = {
        "phone_number": "+15551234567",
        "status": "queued",
        "line_type": "Wireless",
    }
    if carrier is not None:
        recipient["carrier"] = carrier
    return {
        "data": {
            "record_type": "message",
            "direction": "outbound",
            "id": MESSAGE_ID,
            "type": "SMS",
            "from": {"phone_number": "+15557654321", "carrier": "TELNYX LLC", "line_type": "VoIP"},
            "to": [recipient],
            "text": "hi",
            "webhook_url": CALLBACK,
            "encoding": "GSM-7",
            "parts": 1,
            "errors": [],
        }
    }


def telnyx_error(code: str, title: str = "Title", detail: str = "Detail") -> dict[str, Any]:
    return {"errors": [{"code": code, "title": title, "detail": detail}]}


def provider(handler: Handler | None = None, **options: Any) -> TelnyxProvider:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("this test must not send anything")

    client = httpx.AsyncClient(base_url=API, transport=httpx.MockTransport(handler or unreachable))
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "public_key": PUBLIC_KEY,
        "clock": lambda: float(NOW),
        **options,
    }
    return TelnyxProvider(client=client, **settings)


def text(**overrides: Any) -> OutboundText:
    fields: dict[str, Any] = {
        "message_id": "msg-0001",
        "to": "+15551234567",
        "sender": "+15557654321",
        "body": 'Hi Zoë & co: 100% = done + "more" 👍\nline two',
        "status_callback_url": CALLBACK,
        "validity_s": 3600,
    }
    fields.update(overrides)
    return OutboundText(**fields)


async def send_answered_by(
    status: int, payload: object = None, headers: dict[str, str] | None = None, body: str = ""
) -> SendResult:
    def handler(request: httpx.Request) -> httpx.Response:
        if payload is None:
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=payload, headers=headers)

    ours = provider(handler)
    try:
        return await ours.send(text())
    finally:
        await ours.aclose()


# -- 1. request-shape parity -------------------------------------------------------------------


def sdk_request(message: OutboundText) -> httpx.Request:
    """The request telnyx-python's messages.send puts on the wire, captured before it leaves."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=queued())

    client = telnyx.Telnyx(
        api_key=API_KEY,
        base_url=f"{API}/v2",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    answer = client.messages.send(
        from_=message.sender,
        to=message.to,
        text=message.body,
        webhook_url=message.status_callback_url,
    )
    assert answer.data is not None and answer.data.id == MESSAGE_ID
    [request] = sent
    return request


async def our_request(message: OutboundText) -> httpx.Request:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json=queued())

    ours = provider(handler)
    try:
        result = await ours.send(message)
    finally:
        await ours.aclose()
    assert result.ok
    [request] = captured
    return request


PARITY_CASES = [
    pytest.param(text(), id="unicode-with-validity"),
    pytest.param(text(body="Polls close at 8pm", validity_s=None), id="gsm7"),
    pytest.param(text(sender="AcmeInc"), id="alphanumeric-sender"),
    pytest.param(
        text(status_callback_url=CALLBACK + "&x=%20a%26b"), id="callback-with-escaped-query"
    ),
]


@pytest.mark.parametrize("message", PARITY_CASES)
async def test_send_posts_the_same_request_as_the_official_sdk(message: OutboundText) -> None:
    theirs = sdk_request(message)
    ours = await our_request(message)

    assert ours.method == theirs.method == "POST"
    assert str(ours.url) == str(theirs.url) == f"{API}/v2/messages"
    assert ours.url.path == theirs.url.path == "/v2/messages"
    assert not ours.url.query
    assert ours.headers["authorization"] == theirs.headers["authorization"]
    assert ours.headers["authorization"] == f"Bearer {API_KEY}"
    assert ours.headers["content-type"] == theirs.headers["content-type"] == JSON
    assert ours.headers["accept"] == theirs.headers["accept"] == JSON

    our_fields = json.loads(ours.content)
    sdk_fields = json.loads(theirs.content)
    assert our_fields == sdk_fields
    # The four fields compared: from, to, text, webhook_url; no validity field exists.
    assert set(our_fields) == WIRE_FIELDS
    assert len(our_fields) == 4
    assert our_fields["text"] == message.body
    assert our_fields["webhook_url"] == message.status_callback_url


async def test_the_sdk_has_no_validity_field_so_none_is_sent() -> None:
    from telnyx.types.message_send_params import MessageSendParams

    fields = set(MessageSendParams.__annotations__)
    assert not {f for f in fields if "valid" in f or "expir" in f or "ttl" in f}
    assert set(json.loads((await our_request(text(validity_s=60))).content)) == WIRE_FIELDS


def queued_for(wait_s: object) -> dict[str, Any]:
    answer = queued()
    answer["data"]["wait_seconds"] = wait_s
    return answer


async def test_a_text_telnyx_will_queue_past_its_validity_is_logged_by_its_id() -> None:
    # Telnyx takes no validity; its answer's wait_seconds is the SDK's own field.
    from telnyx.types.outbound_message_payload import OutboundMessagePayload

    assert "wait_seconds" in OutboundMessagePayload.model_fields
    ours = provider(lambda request: httpx.Response(200, json=queued_for(90.5)))
    try:
        with capture_logs() as logs:
            result = await ours.send(text(validity_s=60))
    finally:
        await ours.aclose()

    assert result.ok
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert warning["event"] == "telnyx will send this text after its validity"
    assert (warning["message_id"], warning["queued_s"], warning["validity_s"]) == (
        "msg-0001",
        90.5,
        60,
    )


@pytest.mark.parametrize(
    ("wait_s", "validity_s"),
    [(0.5, 60), (60, 60), (90, None), (None, 60), ("90", 60), (True, 0)],
    ids=["short-wait", "exactly-the-validity", "no-validity", "no-wait", "str", "bool"],
)
async def test_a_text_that_leaves_telnyx_within_its_validity_is_not_logged(
    wait_s: object, validity_s: int | None
) -> None:
    ours = provider(lambda request: httpx.Response(200, json=queued_for(wait_s)))
    try:
        with capture_logs() as logs:
            assert (await ours.send(text(validity_s=validity_s))).ok
    finally:
        await ours.aclose()

    assert not logs


# -- 2. send answers ---------------------------------------------------------------------------


async def test_a_queued_text_is_ok_with_its_id_and_carrier() -> None:
    result = await send_answered_by(200, queued())

    assert result.ok
    assert result.provider_message_id == MESSAGE_ID
    assert result.carrier == CARRIER  # raw; worker/carriers.py normalises it
    assert result.error_code is None


@pytest.mark.parametrize("carrier", [None, ""])
async def test_an_answer_without_a_carrier_is_ok_without_one(carrier: str | None) -> None:
    result = await send_answered_by(200, queued(carrier=carrier))

    assert result.ok
    assert result.carrier is None


async def test_an_answer_with_data_but_no_id_is_still_ok() -> None:
    # Telnyx took the text; resending it could text the person twice.
    result = await send_answered_by(200, {"data": {"record_type": "message"}})

    assert result.ok
    assert result.provider_message_id is None


@pytest.mark.parametrize(
    "payload",
    [{}, {"data": "nope"}, {"data": None}, ["data"]],
    ids=["empty", "str", "null", "list"],
)
async def test_a_2xx_without_telnyxs_data_object_is_ambiguous(payload: object) -> None:
    # A 2xx may mean Telnyx took the text: never failed over, retried only if allowed.
    result = await send_answered_by(200, payload)

    assert result.category is Category.AMBIGUOUS
    assert result.error_code == "http_200"
    assert result.provider_message_id is None


async def test_a_2xx_that_is_not_json_is_ambiguous() -> None:
    result = await send_answered_by(200, body="<html>captive portal</html>")

    assert result.category is Category.AMBIGUOUS


def receipt_failing_with(code: str) -> Category:
    body = receipt_body("delivery_failed", errors=[{"code": code, "title": "t", "detail": "d"}])
    parsed = provider().parse_receipt(unsigned(body))
    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code == code
    return parsed.category


@pytest.mark.parametrize(("code", "category"), sorted(ERROR_CATEGORIES.items()))
async def test_each_known_telnyx_code_has_its_category(code: str, category: Category) -> None:
    # The same table serves the send answer and the receipt.
    result = await send_answered_by(400, telnyx_error(code, "Some title", "Some detail"))
    assert result.category is category
    assert result.error_code == code
    assert result.error == "Some title: Some detail"
    assert result.provider_message_id is None
    assert receipt_failing_with(code) is category
    assert classify(code, 200) is category


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("40002", Category.CARRIER_BLOCK),
        ("40003", Category.CARRIER_BLOCK),
        ("40001", Category.BAD_NUMBER),
        ("40008", Category.BAD_NUMBER),
        ("40300", Category.OPTED_OUT),
        ("40011", Category.THROTTLED),
        ("10011", Category.THROTTLED),
        ("40006", Category.TRANSIENT),
        ("40004", Category.AMBIGUOUS),
    ],
)
def test_the_codes_design_md_names_have_its_categories(code: str, category: Category) -> None:
    assert ERROR_CATEGORIES[code] is category


async def test_an_opt_out_at_send_is_opted_out_whatever_the_status_line() -> None:
    # Telnyx's documented answer to a text for a recipient who sent STOP.
    detail = (
        "Messages cannot be sent from '+15557654321' to '+15551234567' "
        "due to an existing block rule."
    )
    for status in (400, 403, 422):
        result = await send_answered_by(
            status, telnyx_error("40300", "Blocked due to STOP message", detail)
        )
        assert result.category is Category.OPTED_OUT
        assert result.error is not None and result.error.startswith("Blocked due to STOP")


async def test_an_error_code_sent_as_a_number_is_read() -> None:
    result = await send_answered_by(400, {"errors": [{"code": 40300, "title": "STOP"}]})

    assert result.category is Category.OPTED_OUT
    assert result.error_code == "40300"
    assert result.error == "STOP"


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_an_unknown_code_in_a_4xx_is_permanent(status: int) -> None:
    result = await send_answered_by(status, telnyx_error("10015", "Bad Request"))

    assert result.category is Category.PERMANENT
    assert result.error_code == "10015"


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_a_4xx_without_telnyxs_errors_is_permanent(status: int) -> None:
    result = await send_answered_by(status, body="nope")

    assert result.category is Category.PERMANENT
    assert result.error_code == f"http_{status}"


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateways_502_or_504_leaves_it_uncertain_whether_the_text_went(status: int) -> None:
    # A gateway answered, not telnyx: the provider behind it may have taken the text.
    with pytest.raises(ProviderUncertain):
        await send_answered_by(status, body="<html>oops</html>")


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_transient(status: int) -> None:
    result = await send_answered_by(status, body="<html>oops</html>")

    assert result.category is Category.TRANSIENT
    assert result.error_code == f"http_{status}"


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (401, telnyx_error("10009", "Authentication failed")),
        (401, {}),
        (403, telnyx_error("10010", "Authorization failed")),
    ],
    ids=["401", "bare-401", "403"],
)
async def test_an_authentication_failure_is_transient(status: int, payload: object) -> None:
    result = await send_answered_by(status, payload)

    assert result.category is Category.TRANSIENT


# -- 2b. throttling ----------------------------------------------------------------------------

TOO_MANY = telnyx_error("10011", "Too many requests", "You have exceeded the maximum number.")


async def test_429_is_throttled_and_honours_retry_after() -> None:
    result = await send_answered_by(429, TOO_MANY, headers={"Retry-After": "3"})

    assert result.category is Category.THROTTLED
    assert result.retry_after_s == 3
    assert result.error_code == "10011"


async def test_429_waits_the_documented_seconds_of_x_ratelimit_reset() -> None:
    headers = {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "7"}

    result = await send_answered_by(429, TOO_MANY, headers=headers)

    assert result.category is Category.THROTTLED
    assert result.retry_after_s == 7


async def test_429_with_an_epoch_reset_waits_until_then_by_the_providers_clock() -> None:
    result = await send_answered_by(429, TOO_MANY, headers={"x-ratelimit-reset": str(NOW + 12)})

    assert result.retry_after_s == 12


async def test_429_with_a_retry_after_date_waits_until_then_by_the_providers_clock() -> None:
    # NOW is Tue, 14 Nov 2023 22:13:20 GMT.
    headers = {"Retry-After": "Tue, 14 Nov 2023 22:13:35 GMT"}

    assert (await send_answered_by(429, TOO_MANY, headers=headers)).retry_after_s == 15


async def test_retry_after_wins_over_the_reset_header() -> None:
    headers = {"Retry-After": "2", "x-ratelimit-reset": "30"}

    assert (await send_answered_by(429, TOO_MANY, headers=headers)).retry_after_s == 2


async def test_429_without_a_body_or_headers_is_throttled_without_a_delay() -> None:
    result = await send_answered_by(429, body="slow down")

    assert result.category is Category.THROTTLED
    assert result.retry_after_s is None
    assert result.error_code == "http_429"


async def test_the_reset_header_is_read_only_when_throttled() -> None:
    # Telnyx sends it on every answer; on a 503 it says nothing about when to retry.
    result = await send_answered_by(503, body="down", headers={"x-ratelimit-reset": "40"})

    assert result.category is Category.TRANSIENT
    assert result.retry_after_s is None


async def test_a_throttled_code_in_a_400_uses_the_reset_header_too() -> None:
    result = await send_answered_by(400, telnyx_error("40011"), headers={"x-ratelimit-reset": "5"})

    assert result.category is Category.THROTTLED
    assert result.retry_after_s == 5


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("0", 0.0),
        ("1.5", 1.5),
        (" 60 ", 60.0),
        ("-3", 0.0),
        (str(NOW + 30), 30.0),
        (str(NOW - 30), 0.0),  # a reset already past: go now, never a negative wait
        (str((NOW + 4) * 1000), 4.0),  # a Unix time in milliseconds
        (str(NOW * 1000 - 5000), 0.0),
    ],
)
def test_ratelimit_reset_is_seconds_or_an_epoch_and_never_negative(
    raw: str | None, expected: float | None
) -> None:
    assert ratelimit_reset_s(raw, float(NOW)) == expected


# -- 3. network faults at the boundary ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        (httpx.ConnectError, ProviderUnreachable),
        (httpx.ReadTimeout, ProviderTimeout),
        (httpx.ConnectTimeout, ProviderUnreachable),
        # The connection closed after the request was written: it may have gone.
        (httpx.RemoteProtocolError, ProviderUncertain),
    ],
)
async def test_network_faults_become_provider_errors(
    fault: type[httpx.TransportError], raised: type[ProviderError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise fault("boom", request=request)

    ours = provider(handler)
    try:
        with pytest.raises(raised) as caught:
            await ours.send(text())
    finally:
        await ours.aclose()

    assert isinstance(caught.value.__cause__, fault)
    assert caught.value.provider == "telnyx"


# -- 4. signatures -----------------------------------------------------------------------------


def receipt_body(
    status: str = "delivered",
    *,
    event_type: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    carrier: str | None = CARRIER,
    webhook_url: str | None = CALLBACK,
) -> dict[str, Any]:
    """A delivery receipt as Telnyx posts it (SDK DeliveryUpdateWebhookEvent)."""
    recipient: dict[str, Any] = {
        "phone_number": "+15551234567",
        "status": status,
        "line_type": "Wireless",
    }
    if carrier is not None:
        recipient["carrier"] = carrier
    payload: dict[str, Any] = {
        "record_type": "message",
        "direction": "outbound",
        "id": MESSAGE_ID,
        "type": "SMS",
        "messaging_profile_id": "400174af-0a13-4e28-b4f5-0123456789ab",
        "from": {"phone_number": "+15557654321", "carrier": "TELNYX LLC", "line_type": "VoIP"},
        "to": [recipient],
        "text": "Hi Zoë 👍",
        "encoding": "UCS-2",
        "parts": 1,
        "cost": {"amount": "0.0051", "currency": "USD"},
        "received_at": "2023-11-14T22:13:18.000+00:00",
        "sent_at": "2023-11-14T22:13:19.000+00:00",
        "completed_at": "2023-11-14T22:13:20.000+00:00",
        "errors": errors or [],
        "tags": [],
        "webhook_failover_url": None,
    }
    if webhook_url is not None:
        payload["webhook_url"] = webhook_url
    final = status not in ("queued", "sending", "sent")
    return {
        "data": {
            "record_type": "event",
            "id": "b301ed3f-1490-491f-995f-6e64e69674d4",
            "event_type": event_type or ("message.finalized" if final else "message.sent"),
            "occurred_at": "2023-11-14T22:13:20.000+00:00",
            "payload": payload,
        },
        "meta": {"attempt": 1, "delivered_to": CALLBACK},
    }


def encode(body: dict[str, Any] | bytes) -> bytes:
    # Telnyx's bodies are compact JSON; any bytes are signed as they are.
    return body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()


def sign(body: bytes, timestamp: str, key: Ed25519PrivateKey = PRIVATE_KEY) -> str:
    return base64.b64encode(key.sign(signed_bytes(timestamp, body))).decode("ascii")


def signed(
    body: dict[str, Any] | bytes | None = None,
    *,
    timestamp: int | str = NOW,
    key: Ed25519PrivateKey = PRIVATE_KEY,
    url: str = CALLBACK,
) -> WebhookRequest:
    raw = encode(receipt_body() if body is None else body)
    # Lower-case names, as starlette hands them over.
    headers = {
        "telnyx-signature-ed25519": sign(raw, str(timestamp), key),
        "telnyx-timestamp": str(timestamp),
        "content-type": JSON,
    }
    return WebhookRequest(url=url, headers=headers, body=raw, content_type=JSON)


def unsigned(body: dict[str, Any] | bytes, url: str = CALLBACK) -> WebhookRequest:
    return WebhookRequest(url=url, headers={}, body=encode(body), content_type=JSON)


def with_headers(request: WebhookRequest, **changes: str | None) -> WebhookRequest:
    """The request with headers replaced (a value) or removed (None); names use _ for -."""
    headers = dict(request.headers)
    for name, value in changes.items():
        header = name.replace("_", "-")
        headers.pop(header, None)
        if value is not None:
            headers[header] = value
    return WebhookRequest(
        url=request.url, headers=headers, body=request.body, content_type=request.content_type
    )


def sdk_accepts(request: WebhookRequest, now: float = NOW, public_key: str = PUBLIC_KEY) -> bool:
    """What the SDK's verifier says, on its own clock set to ``now``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sdk_webhooks, "time", SimpleNamespace(time=lambda: now))
        try:
            sdk_webhooks.verify_webhook_signature(request.body, dict(request.headers), public_key)
        except (sdk_webhooks.WebhookVerificationError, UnicodeDecodeError):
            return False
    return True


def ours_accepts(request: WebhookRequest, now: float = NOW, **options: Any) -> bool:
    return provider(clock=lambda: float(now), **options).verify_signature(request)


GENUINE = signed()


def test_verify_accepts_a_receipt_the_sdk_accepts() -> None:
    assert sdk_accepts(GENUINE)
    assert ours_accepts(GENUINE)


def test_both_sdk_verifiers_accept_a_receipt_signed_now_and_so_do_we() -> None:
    now = int(time.time())
    request = signed(timestamp=now)
    client = telnyx.Telnyx(api_key=API_KEY, public_key=PUBLIC_KEY)
    payload = request.body.decode("utf-8")
    headers = dict(request.headers)

    # client.webhooks.unwrap is the lib's verifier; the generated resource keeps its own.
    event = client.webhooks.unwrap(payload, headers=headers)
    generated = WebhooksResource._unwrap_hmac  # type: ignore[attr-defined]
    generated(client.webhooks, payload, headers=headers, key=PUBLIC_KEY)

    assert event is not None
    assert provider(clock=time.time).verify_signature(request)


def test_the_public_key_form_is_the_one_the_sdk_takes() -> None:
    # base64 of the 32 raw bytes, as Mission Control shows it and the SDK decodes it.
    assert len(base64.b64decode(PUBLIC_KEY)) == 32
    assert sdk_accepts(GENUINE, public_key=PUBLIC_KEY)
    assert ours_accepts(GENUINE, public_key=f"  {PUBLIC_KEY}\n")  # pasted with whitespace


@pytest.mark.parametrize(
    "body",
    [
        receipt_body(),
        receipt_body("delivery_failed", errors=[{"code": "40002", "title": "Blocked as spam"}]),
        b"{}",
        b"",
        '{"x": "caf\u00e9 \u4f60\u597d \U0001f44d | 123|"}'.encode(),
        b'{\n  "pretty": true\n}\n',
    ],
    ids=["delivered", "failed", "empty-object", "empty", "unicode-and-pipes", "pretty"],
)
def test_verify_agrees_with_the_sdk_on_genuine_bodies(body: dict[str, Any] | bytes) -> None:
    request = signed(body)

    assert sdk_accepts(request)
    assert ours_accepts(request)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.text(max_size=200),
    age_s=st.integers(min_value=-400, max_value=400),
    tamper=st.sampled_from(["none", "body", "timestamp", "key"]),
)
def test_verify_accepts_exactly_what_the_sdk_accepts(body: str, age_s: int, tamper: str) -> None:
    raw = body.encode("utf-8")
    timestamp = str(NOW - age_s)
    key = OTHER_PRIVATE_KEY if tamper == "key" else PRIVATE_KEY
    request = signed(raw, timestamp=timestamp, key=key)
    if tamper == "body":
        request = WebhookRequest(request.url, request.headers, raw + b" ", request.content_type)
    if tamper == "timestamp":
        request = with_headers(request, telnyx_timestamp=str(NOW - age_s + 1))

    theirs = sdk_accepts(request)
    assert ours_accepts(request) is theirs
    assert theirs is (tamper == "none" and abs(age_s) <= DEFAULT_TOLERANCE_S)


def test_verify_refuses_a_tampered_body() -> None:
    body = receipt_body()
    body["data"]["payload"]["to"][0]["status"] = "delivery_failed"
    forged = WebhookRequest(GENUINE.url, GENUINE.headers, encode(body), JSON)

    assert not sdk_accepts(forged)
    assert not ours_accepts(forged)


def test_verify_refuses_a_body_with_a_byte_added() -> None:
    forged = WebhookRequest(GENUINE.url, GENUINE.headers, GENUINE.body + b"\n", JSON)

    assert not ours_accepts(forged)


def test_verify_refuses_a_tampered_timestamp() -> None:
    forged = with_headers(GENUINE, telnyx_timestamp=str(NOW + 1))

    assert not sdk_accepts(forged)
    assert not ours_accepts(forged)


@pytest.mark.parametrize("age_s", [301, 3600, 86_400 * 365])
def test_verify_refuses_a_replayed_receipt(age_s: int) -> None:
    old = signed(timestamp=NOW - age_s)

    assert not sdk_accepts(old)
    assert not ours_accepts(old)


@pytest.mark.parametrize("ahead_s", [301, 3600])
def test_verify_refuses_a_receipt_from_the_future(ahead_s: int) -> None:
    future = signed(timestamp=NOW + ahead_s)

    assert not sdk_accepts(future)
    assert not ours_accepts(future)


def test_verify_honours_the_tolerance_at_its_edge_both_ways() -> None:
    for timestamp in (NOW - 300, NOW + 300):
        request = signed(timestamp=timestamp)
        assert sdk_accepts(request)
        assert ours_accepts(request)
        assert not ours_accepts(request, tolerance_s=299)


def test_verify_reads_the_clock_on_every_receipt() -> None:
    now = [float(NOW)]
    ours = provider(clock=lambda: now[0])

    assert ours.verify_signature(GENUINE)
    now[0] += 301
    assert not ours.verify_signature(GENUINE)


def test_verify_refuses_a_receipt_signed_with_another_key() -> None:
    other = signed(key=OTHER_PRIVATE_KEY)

    assert not sdk_accepts(other)
    assert not ours_accepts(other)
    assert ours_accepts(other, public_key=OTHER_PUBLIC_KEY)


@pytest.mark.parametrize(
    "missing", ["telnyx_signature_ed25519", "telnyx_timestamp"], ids=["signature", "timestamp"]
)
def test_verify_refuses_a_receipt_missing_a_header(missing: str) -> None:
    stripped = with_headers(GENUINE, **{missing: None})

    assert not sdk_accepts(stripped)
    assert not ours_accepts(stripped)


def test_verify_refuses_an_unsigned_receipt() -> None:
    assert not ours_accepts(unsigned(receipt_body()))


GENUINE_SIGNATURE = GENUINE.headers["telnyx-signature-ed25519"]


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not base64!",
        "é" * 88,
        GENUINE_SIGNATURE[:-4],
        GENUINE_SIGNATURE + "AAAA",
        GENUINE_SIGNATURE.rstrip("="),
        base64.b64encode(b"\0" * 64).decode(),
    ],
    ids=["empty", "not-base64", "non-ascii", "short", "long", "unpadded", "zeros"],
)
def test_verify_refuses_a_garbled_signature(garbage: str) -> None:
    forged = with_headers(GENUINE, telnyx_signature_ed25519=garbage)

    assert not ours_accepts(forged)


def test_verify_refuses_a_signature_in_the_urlsafe_alphabet() -> None:
    # About one fresh signature in 15 has neither "+" nor "/", and then its
    # urlsafe spelling is the genuine one: pick a receipt whose spelling differs.
    def sig(r: WebhookRequest) -> str:
        return r.headers["telnyx-signature-ed25519"]

    receipts = (signed(timestamp=NOW - i) for i in range(100))
    genuine = next(r for r in receipts if {"+", "/"} & set(sig(r)))
    urlsafe = sig(genuine).replace("+", "-").replace("/", "_")

    assert ours_accepts(genuine)
    assert not ours_accepts(with_headers(genuine, telnyx_signature_ed25519=urlsafe))


ARABIC_INDIC_DIGITS = "\u0661\u0667" + "\u0660" * 8  # str.isdigit() and int() say yes


@pytest.mark.parametrize(
    "timestamp",
    ["", "soon", "1700000000.5", "-1700000000", ARABIC_INDIC_DIGITS, "9" * 40, "1e9"],
)
def test_verify_refuses_a_malformed_timestamp(timestamp: str) -> None:
    request = signed(timestamp=timestamp)

    assert not ours_accepts(request)


@pytest.mark.parametrize("timestamp", [f"+{NOW}", f" {NOW}", f"{NOW} ", "1_700_000_000"])
def test_verify_is_stricter_than_the_sdk_on_timestamps_that_are_not_plain_digits(
    timestamp: str,
) -> None:
    # int() reads these, so the SDK accepts one Telnyx signed; Telnyx sends plain digits.
    request = signed(timestamp=timestamp)

    assert sdk_accepts(request)
    assert not ours_accepts(request)


def test_verify_is_stricter_than_the_sdk_on_signatures_with_stray_characters() -> None:
    # The SDK's b64decode skips what is not base64; ours takes canonical base64 only.
    noisy = with_headers(GENUINE, telnyx_signature_ed25519="!" + GENUINE_SIGNATURE)

    assert sdk_accepts(noisy)
    assert not ours_accepts(noisy)


@pytest.mark.parametrize(
    "headers",
    [
        {"telnyx-signature-ed25519": GENUINE_SIGNATURE, "telnyx-timestamp": str(NOW)},
        {"Telnyx-Signature-Ed25519": GENUINE_SIGNATURE, "Telnyx-Timestamp": str(NOW)},
        {"TELNYX-SIGNATURE-ED25519": GENUINE_SIGNATURE, "telnyx-TIMESTAMP": str(NOW)},
    ],
    ids=["lower", "title", "mixed"],
)
def test_header_names_are_read_in_any_case_from_a_plain_dict(headers: dict[str, str]) -> None:
    request = WebhookRequest(CALLBACK, headers, GENUINE.body, JSON)

    assert sdk_accepts(request)
    assert ours_accepts(request)


def test_verify_refuses_a_body_that_is_not_utf8_even_if_signed() -> None:
    request = signed(b'{"x": "\xff\xfe"}')

    assert not sdk_accepts(request)
    assert not ours_accepts(request)


def test_the_url_is_not_signed_so_the_signature_holds_on_another_url() -> None:
    # Why the mid is taken from the signed payload (section 5).
    moved = WebhookRequest("https://elsewhere.example/x", GENUINE.headers, GENUINE.body, JSON)

    assert ours_accepts(moved)


# -- 5. receipts -------------------------------------------------------------------------------


def parse(body: dict[str, Any], url: str = CALLBACK) -> Any:
    return provider().parse_receipt(unsigned(body, url=url))


def test_the_receipt_fixture_is_the_sdks_delivery_update_event() -> None:
    event = DeliveryUpdateWebhookEvent.model_validate(receipt_body("delivery_failed"))

    assert event.data is not None and event.data.payload is not None
    assert event.data.event_type == "message.finalized"
    assert event.data.payload.to is not None
    assert event.data.payload.to[0].status == "delivery_failed"
    assert event.data.payload.to[0].carrier == CARRIER


def test_a_delivered_receipt_is_ok_with_its_carrier_and_message_id() -> None:
    parsed = parse(receipt_body("delivered"))

    assert parsed.provider_message_id == MESSAGE_ID
    assert parsed.status == Status.DELIVERED
    assert parsed.message_id == "msg-0001"
    assert parsed.carrier == CARRIER
    assert parsed.category is Category.OK
    assert parsed.error_code is None


def test_a_sent_receipt_means_sent() -> None:
    parsed = parse(receipt_body("sent"))

    assert parsed.status == Status.SENT
    assert parsed.category is Category.OK


@pytest.mark.parametrize("status", ["delivery_failed", "sending_failed"])
def test_a_spam_block_is_an_undelivered_carrier_block(status: str) -> None:
    errors = [{"code": "40002", "title": "Blocked as spam - temporary", "detail": "..."}]

    parsed = parse(receipt_body(status, errors=errors))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code == "40002"
    assert parsed.category is Category.CARRIER_BLOCK
    assert parsed.carrier == CARRIER


@pytest.mark.parametrize("status", ["delivery_failed", "sending_failed"])
def test_a_failed_receipt_without_a_code_is_permanent(status: str) -> None:
    parsed = parse(receipt_body(status))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code is None
    assert parsed.category is Category.PERMANENT


def test_an_expired_receipt_without_a_code_is_transient() -> None:
    parsed = parse(receipt_body("expired"))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.category is Category.TRANSIENT


def test_an_expired_receipt_with_a_code_takes_the_codes_category() -> None:
    parsed = parse(receipt_body("expired", errors=[{"code": "40005", "title": "Expired"}]))

    assert parsed.category is Category.AMBIGUOUS


def test_only_the_first_error_classifies() -> None:
    errors = [{"code": "40300", "title": "STOP"}, {"code": "40002", "title": "spam"}]

    assert parse(receipt_body("delivery_failed", errors=errors)).category is Category.OPTED_OUT


def test_an_unknown_code_in_a_receipt_is_permanent() -> None:
    parsed = parse(receipt_body("delivery_failed", errors=[{"code": "49999", "title": "?"}]))

    assert parsed.error_code == "49999"
    assert parsed.category is Category.PERMANENT


@pytest.mark.parametrize("progress", ["queued", "sending", "delivery_unconfirmed", "read", "new"])
def test_an_intermediate_or_unconfirmed_receipt_reports_progress_only(progress: str) -> None:
    errors = [{"code": "40004", "title": "Rejected by destination"}]
    parsed = parse(receipt_body(progress, errors=errors))

    assert parsed.status == progress
    assert parsed.category is Category.OK
    assert parsed.error_code is None
    assert parsed.message_id == "msg-0001"
    assert parsed.carrier == CARRIER


def test_a_read_event_is_accepted_as_progress() -> None:
    assert parse(receipt_body("read", event_type="message.read")).status == "read"


def test_the_message_id_comes_from_the_signed_webhook_url() -> None:
    # Delivered to the profile's webhook (no mid in the URL): the payload still names it.
    parsed = parse(receipt_body(), url="https://hooks.example.com/webhooks/telnyx/status")

    assert parsed.message_id == "msg-0001"


def test_a_receipt_replayed_onto_another_mid_is_refused() -> None:
    with pytest.raises(InvalidWebhook, match="mid"):
        parse(receipt_body(), url="https://hooks.example.com/webhooks/telnyx/status?mid=msg-0002")


def test_a_receipt_replayed_onto_another_attempt_is_refused() -> None:
    # The attempt decides which send a receipt settles: it must be the signed one too.
    with pytest.raises(InvalidWebhook, match="att"):
        parse(receipt_body(), url=CALLBACK.replace("att=1", "att=2"))


def test_a_receipt_posted_to_a_url_without_sendqs_params_takes_them_from_the_payload() -> None:
    # Telnyx's fallback to the messaging profile's webhook: a URL of its own.
    parsed = parse(receipt_body(), url="https://hooks.example.com/profile-hook")

    assert parsed.message_id == "msg-0001"


def test_without_a_webhook_url_in_the_payload_the_urls_mid_is_not_believed() -> None:
    # The URL is not signed: a mid there alone could name any text.
    assert parse(receipt_body(webhook_url=None), url=CALLBACK).message_id is None


def test_a_webhook_url_that_is_not_a_string_is_invalid() -> None:
    body = receipt_body()
    body["data"]["payload"]["webhook_url"] = ["https://hooks.example.com/?mid=msg-0001"]

    with pytest.raises(InvalidWebhook, match="webhook_url"):
        parse(body)


def test_a_receipt_naming_no_mid_anywhere_has_no_message_id() -> None:
    body = receipt_body(webhook_url="https://hooks.example.com/webhooks/telnyx/status")

    assert parse(body, url="https://hooks.example.com/x").message_id is None


def test_a_receipt_without_a_carrier_has_none() -> None:
    assert parse(receipt_body(carrier=None)).carrier is None


def test_a_signed_receipt_parses_as_it_verifies() -> None:
    ours = provider()

    assert ours.verify_signature(GENUINE)
    assert ours.parse_receipts(GENUINE)[0].status == Status.DELIVERED


def test_an_error_code_sent_as_a_number_in_a_receipt_is_read() -> None:
    parsed = parse(receipt_body("delivery_failed", errors=[{"code": 40001, "title": "x"}]))

    assert parsed.error_code == "40001"
    assert parsed.category is Category.BAD_NUMBER


def _edit(change: Callable[[dict[str, Any]], None]) -> bytes:
    body = receipt_body()
    change(body)
    return encode(body)


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        target: Any = body
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


def _drop(path: tuple[str | int, ...]) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        target: Any = body
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return change


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'["data"]', "data"),
        (b"{}", "data"),
        (b'{"data": []}', "data"),
        (_set(("data", "event_type"), "message.received"), "event_type"),
        (_drop(("data", "event_type")), "event_type"),
        (_set(("data", "payload"), "x"), "payload"),
        (_drop(("data", "payload", "id")), "payload.id"),
        (_set(("data", "payload", "id"), 7), "payload.id"),
        (_drop(("data", "payload", "to")), "payload.to"),
        (_set(("data", "payload", "to"), []), "payload.to"),
        (_set(("data", "payload", "to"), ["+15551234567"]), "payload.to"),
        (_set(("data", "payload", "to"), {"status": "delivered"}), "payload.to"),
        (_set(("data", "payload", "to", 0, "status"), None), "status"),
        (_set(("data", "payload", "to", 0, "status"), ""), "status"),
        (_set(("data", "payload", "to", 0, "status"), {"s": 1}), "status"),
        (_set(("data", "payload", "webhook_url"), "https://[::1/x?mid=m"), "URL"),
    ],
    ids=[
        "bad-json",
        "bytes",
        "array",
        "no-data",
        "data-array",
        "inbound",
        "no-event-type",
        "payload-str",
        "no-id",
        "id-int",
        "no-to",
        "to-empty",
        "to-strings",
        "to-object",
        "status-null",
        "status-empty",
        "status-object",
        "bad-webhook-url",
    ],
)
def test_a_malformed_receipt_is_invalid_with_a_reason(
    body: bytes | Callable[[dict[str, Any]], None], reason: str
) -> None:
    raw = body if isinstance(body, bytes) else _edit(body)

    with pytest.raises(InvalidWebhook, match=reason):
        provider().parse_receipt(unsigned(raw))


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_receipt_that_is_not_json_by_content_type_is_invalid(content_type: str) -> None:
    request = WebhookRequest(CALLBACK, {}, encode(receipt_body()), content_type)

    with pytest.raises(InvalidWebhook):
        provider().parse_receipt(request)


def test_a_json_receipt_with_a_charset_is_accepted() -> None:
    request = WebhookRequest(CALLBACK, {}, encode(receipt_body()), f"{JSON}; charset=utf-8")

    assert provider().parse_receipt(request).status == Status.DELIVERED


def test_a_receipt_on_an_unparsable_url_is_invalid() -> None:
    with pytest.raises(InvalidWebhook):
        parse(receipt_body(), url="https://[::1/cb?mid=msg-0001")


# -- 6. construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("public_key", "reason"),
    [
        ("", "32 bytes"),
        ("not base64!", "not base64"),
        ("clé", "not base64"),
        (base64.b64encode(b"\1" * 31).decode(), "32 bytes"),
        (base64.b64encode(b"\1" * 33).decode(), "32 bytes"),
        ("-----BEGIN PUBLIC KEY-----", "not base64"),
    ],
    ids=["empty", "not-base64", "non-ascii", "short", "long", "pem"],
)
def test_an_unusable_public_key_is_a_config_error_naming_the_setting(
    public_key: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=r"providers\.telnyx\.public_key") as caught:
        provider(public_key=public_key)

    assert reason in str(caught.value)
    assert "SENDQ_PROVIDERS__TELNYX__PUBLIC_KEY" in str(caught.value)


def test_a_provider_without_an_api_key_is_refused() -> None:
    with pytest.raises(ValueError, match="API key"):
        provider(api_key="")


async def test_the_default_client_is_built_without_sending() -> None:
    ours = TelnyxProvider(api_key=API_KEY, public_key=PUBLIC_KEY)
    try:
        assert ours.name == "telnyx"
    finally:
        await ours.aclose()
