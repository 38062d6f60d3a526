"""The Plivo adapter, checked against Plivo's official Python SDK (plivo-python).

The SDK is the reference: the request our adapter sends must be the one
``client.messages.create`` puts on the wire, and our webhook signatures must be
the ones ``plivo.utils.signature_v3`` computes and ``validate_v3_signature``
accepts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import plivo
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3, validate_v3_signature

from worker.errors import (
    InvalidWebhook,
    ProviderError,
    ProviderTimeout,
    ProviderUncertain,
    ProviderUnreachable,
)
from worker.models import Category, Status
from worker.providers.base import OutboundText, SendResult, WebhookRequest
from worker.providers.plivo import (
    ERROR_CATEGORIES,
    MAX_EXPIRY_S,
    MIN_EXPIRY_S,
    PlivoProvider,
    classify,
    message_expiry,
    signature,
)

# The SDK insists on its auth ID format: MA or SA, then 18 capitals or digits.
AUTH_ID = "MAXXXXXXXXXXXXXXXXX1"
AUTH_TOKEN = "ZjQ1YzM3NjM0ZmY5ZTFiYjQ0ZDU0MWYxMTI3ZmJh"
MAIN_ACCOUNT_TOKEN = "main-account-token-0123456789abcdefghij"
API = "https://api.plivo.com"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
CALLBACK = "https://hooks.example.com/webhooks/plivo/status?mid=msg-0001"
NONCE = "05429567804466091622"
# Plivo's documented message_expiry range (support.plivo.com "Message Expiry").
PLIVO_MIN_EXPIRY_S = 5
PLIVO_MAX_EXPIRY_S = 10_799

MESSAGE_UUID = "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
QUEUED = {
    "api_id": "db342550-7f1d-11e1-8ea7-1231380bc196",
    "message": "message(s) queued",
    "message_uuid": [MESSAGE_UUID],
}

Handler = Callable[[httpx.Request], httpx.Response]


# -- helpers -----------------------------------------------------------------


def provider_answering(handler: Handler) -> PlivoProvider:
    client = httpx.AsyncClient(
        base_url=API, auth=(AUTH_ID, AUTH_TOKEN), transport=httpx.MockTransport(handler)
    )
    return PlivoProvider(auth_id=AUTH_ID, auth_token=AUTH_TOKEN, base_url=API, client=client)


def offline_provider(auth_token: str = AUTH_TOKEN) -> PlivoProvider:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("this test must not send anything")

    client = httpx.AsyncClient(base_url=API, transport=httpx.MockTransport(unreachable))
    return PlivoProvider(auth_id=AUTH_ID, auth_token=auth_token, client=client)


def text(**overrides: Any) -> OutboundText:
    fields: dict[str, Any] = {
        "message_id": "msg-0001",
        "to": "+15551234567",
        "sender": "+15557654321",
        "body": "Hi Zoë & co: 100% = done + more 👍\nline two",
        "status_callback_url": CALLBACK,
        "validity_s": 3600,
    }
    fields.update(overrides)
    return OutboundText(**fields)


async def send_answered_by(
    status: int, payload: object, headers: dict[str, str] | None = None
) -> SendResult:
    provider = provider_answering(
        lambda request: httpx.Response(status, json=payload, headers=headers)
    )
    try:
        return await provider.send(text())
    finally:
        await provider.aclose()


async def send_answered_with_text(status: int, body: str) -> SendResult:
    provider = provider_answering(lambda request: httpx.Response(status, text=body))
    try:
        return await provider.send(text())
    finally:
        await provider.aclose()


def plivo_error(message: str) -> dict[str, Any]:
    return {"api_id": "97ceeb52-58b6-11e1-86da-77300b68f8bb", "error": message}


def sdk_signature(
    url: str, params: dict[str, Any], nonce: str = NONCE, token: str = AUTH_TOKEN
) -> str:
    """What plivo-python computes for a POST of ``params`` to ``url``."""
    payload = construct_post_url(url, dict(params)).decode("utf-8")
    return str(get_signature_v3(token.encode(), payload, nonce.encode()).decode("ascii"))


def sdk_accepts(
    url: str, params: dict[str, Any], signature_header: str, nonce: str = NONCE
) -> bool:
    return bool(validate_v3_signature("POST", url, nonce, AUTH_TOKEN, signature_header, params))


def webhook(
    url: str,
    body: bytes,
    signature_header: str | None = None,
    nonce: str | None = NONCE,
    content_type: str = FORM,
    ma_signature: str | None = None,
) -> WebhookRequest:
    headers = httpx.Headers()
    if signature_header is not None:
        headers["X-Plivo-Signature-V3"] = signature_header
    if ma_signature is not None:
        headers["X-Plivo-Signature-Ma-V3"] = ma_signature
    if nonce is not None:
        headers["X-Plivo-Signature-V3-Nonce"] = nonce
    return WebhookRequest(url=url, headers=headers, body=body, content_type=content_type)


# -- 1. request-shape parity ---------------------------------------------------


def sdk_request(message: OutboundText) -> requests.PreparedRequest:
    """The request plivo-python's messages.create puts on the wire, captured before it leaves."""
    client = plivo.RestClient(AUTH_ID, AUTH_TOKEN)
    sent: list[requests.PreparedRequest] = []

    def send(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        sent.append(request)
        response = requests.Response()
        response.status_code = 202
        response._content = json.dumps(QUEUED).encode()
        response.headers["Content-Type"] = JSON
        response.request, response.url = request, str(request.url)
        return response

    client.session.send = send
    kwargs: dict[str, Any] = {
        "src": message.sender,
        "dst": message.to,
        "text": message.body,
        "url": message.status_callback_url,
        "method": "POST",
    }
    if message.validity_s is not None:
        kwargs["message_expiry"] = message.validity_s
    created = client.messages.create(**kwargs)
    assert created.message_uuid == [MESSAGE_UUID]
    [request] = sent
    return request


async def our_request(message: OutboundText) -> httpx.Request:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(202, json=QUEUED)

    provider = provider_answering(handler)
    try:
        result = await provider.send(message)
    finally:
        await provider.aclose()
    assert result.category is Category.OK
    [request] = captured
    return request


def basic_credentials(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    return user, password


SDK_FIELDS = {"src", "dst", "text", "type", "url", "method", "log", "trackable"}
PARITY_CASES = [
    pytest.param(text(), SDK_FIELDS | {"message_expiry"}, id="expiry"),
    pytest.param(text(validity_s=None), SDK_FIELDS, id="no-expiry"),
]


@pytest.mark.parametrize(("message", "field_names"), PARITY_CASES)
async def test_send_posts_the_same_json_as_the_official_sdk(
    message: OutboundText, field_names: set[str]
) -> None:
    theirs = sdk_request(message)
    ours = await our_request(message)

    assert ours.method == theirs.method == "POST"
    assert str(ours.url) == theirs.url == f"{API}/v1/Account/{AUTH_ID}/Message/"
    assert ours.url.path == urlsplit(str(theirs.url)).path
    assert not ours.url.query
    assert basic_credentials(ours.headers["authorization"]) == (AUTH_ID, AUTH_TOKEN)
    assert basic_credentials(str(theirs.headers["Authorization"])) == (AUTH_ID, AUTH_TOKEN)

    assert isinstance(theirs.body, bytes | str)
    our_fields = json.loads(ours.content)
    sdk_fields = json.loads(theirs.body)
    assert our_fields == sdk_fields
    assert set(our_fields) == field_names
    assert our_fields["text"] == message.body
    assert our_fields["url"] == message.status_callback_url


async def test_send_is_json_like_the_sdk() -> None:
    theirs = sdk_request(text())
    ours = await our_request(text())

    assert theirs.headers["Content-Type"] == JSON
    assert ours.headers["content-type"] == JSON
    assert ours.headers["accept"] == theirs.headers["Accept"] == JSON


async def test_send_passes_the_sdk_default_field_values() -> None:
    fields = json.loads((await our_request(text())).content)

    assert fields["type"] == "sms"
    assert fields["method"] == "POST"
    assert fields["log"] == "true"
    assert fields["trackable"] is False
    assert fields["message_expiry"] == 3600


@pytest.mark.parametrize(
    ("validity", "expected"),
    [
        (None, None),
        (60, 60),
        (1, MIN_EXPIRY_S),
        (0, MIN_EXPIRY_S),
        (-5, MIN_EXPIRY_S),
        (MAX_EXPIRY_S, MAX_EXPIRY_S),
        (MAX_EXPIRY_S + 1, MAX_EXPIRY_S),
        (30 * 24 * 3600, MAX_EXPIRY_S),
    ],
    ids=["none", "in-range", "one", "zero", "negative", "at-max", "over-max", "far-future"],
)
def test_message_expiry_is_clamped_to_what_plivo_allows(
    validity: int | None, expected: int | None
) -> None:
    assert message_expiry(validity) == expected


def test_message_expiry_bounds_are_plivos_documented_range() -> None:
    assert (MIN_EXPIRY_S, MAX_EXPIRY_S) == (PLIVO_MIN_EXPIRY_S, PLIVO_MAX_EXPIRY_S)


async def test_a_clamped_expiry_is_what_goes_on_the_wire() -> None:
    fields = json.loads((await our_request(text(validity_s=10 * 3600 * 24))).content)

    assert fields["message_expiry"] == PLIVO_MAX_EXPIRY_S


@pytest.mark.parametrize("auth_id", ["", "MA/../x", "MA 123", "MAÄÄÄ"])
def test_an_auth_id_that_is_not_a_plain_path_segment_is_refused(auth_id: str) -> None:
    with pytest.raises(ValueError, match="auth_id"):
        PlivoProvider(auth_id=auth_id, auth_token=AUTH_TOKEN)


# -- 2. response parsing ---------------------------------------------------------


async def test_a_queued_message_is_ok_with_its_uuid() -> None:
    result = await send_answered_by(202, QUEUED)

    assert result.ok
    assert result.provider_message_id == MESSAGE_UUID
    assert result.error_code is None


async def test_an_accepted_answer_without_a_uuid_is_still_ok() -> None:
    # Plivo took the text; resending it could text the person twice.
    result = await send_answered_by(202, {"api_id": "x", "message": "message(s) queued"})

    assert result.ok
    assert result.provider_message_id is None


@pytest.mark.parametrize(("code", "category"), sorted(ERROR_CATEGORIES.items()))
def test_each_known_plivo_error_code_has_its_category(code: str, category: Category) -> None:
    assert classify(code, 400) is category


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("30", Category.CARRIER_BLOCK),
        ("50", Category.BAD_NUMBER),
        ("200", Category.OPTED_OUT),
        ("20", Category.TRANSIENT),
        ("1000", Category.AMBIGUOUS),
        ("40", Category.PERMANENT),
    ],
)
def test_design_categories_are_all_represented(code: str, category: Category) -> None:
    assert ERROR_CATEGORIES[code] is category


def test_spam_detected_is_the_carrier_block_design_names() -> None:
    assert ERROR_CATEGORIES["30"] is Category.CARRIER_BLOCK


async def test_an_api_error_carries_plivos_message() -> None:
    result = await send_answered_by(400, plivo_error("destination number cannot be same as src"))

    assert result.category is Category.PERMANENT
    assert result.error_code == "http_400"
    assert result.error == "destination number cannot be same as src"
    assert result.provider_message_id is None


async def test_a_field_error_object_is_reported_as_text() -> None:
    result = await send_answered_by(400, {"api_id": "x", "error": {"dst": "invalid number"}})

    assert result.category is Category.PERMANENT
    assert result.error == '{"dst": "invalid number"}'


@pytest.mark.parametrize("message", ["Insufficient Credit", "insufficient credit to send"])
async def test_insufficient_credit_at_send_is_a_provider_fault(message: str) -> None:
    result = await send_answered_by(400, plivo_error(message))

    assert result.category is Category.TRANSIENT
    assert result.error_code == "900"


async def test_429_is_throttled_and_honours_retry_after() -> None:
    result = await send_answered_by(
        429, plivo_error("too many requests"), headers={"Retry-After": "3"}
    )

    assert result.category is Category.THROTTLED
    assert result.retry_after_s == 3
    assert result.error_code == "http_429"


async def test_429_without_a_plivo_body_is_still_throttled() -> None:
    provider = provider_answering(
        lambda request: httpx.Response(429, text="slow down", headers={"Retry-After": "2.5"})
    )
    try:
        result = await provider.send(text())
    finally:
        await provider.aclose()

    assert result.category is Category.THROTTLED
    assert result.retry_after_s == 2.5


async def test_429_even_with_insufficient_credit_text_is_throttled() -> None:
    result = await send_answered_by(429, plivo_error("insufficient credit"))

    assert result.category is Category.THROTTLED


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateways_502_or_504_leaves_it_uncertain_whether_the_text_went(status: int) -> None:
    # A gateway answered, not plivo: the provider behind it may have taken the text.
    with pytest.raises(ProviderUncertain):
        await send_answered_by(status, plivo_error("server error"))


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_transient(status: int) -> None:
    result = await send_answered_by(status, plivo_error("server error"))

    assert result.category is Category.TRANSIENT
    assert result.error_code == f"http_{status}"


async def test_a_server_error_with_an_html_body_is_transient() -> None:
    result = await send_answered_with_text(503, "<html>oops</html>")

    assert result.category is Category.TRANSIENT
    assert result.error == "Service Unavailable"


@pytest.mark.parametrize(
    ("status", "payload"),
    [(401, plivo_error("authentication failed")), (401, {}), (403, plivo_error("forbidden"))],
    ids=["401", "bare-401", "403"],
)
async def test_an_authentication_failure_is_transient(status: int, payload: dict[str, Any]) -> None:
    result = await send_answered_by(status, payload)

    assert result.category is Category.TRANSIENT


@pytest.mark.parametrize("status", [400, 404, 405, 409, 422])
async def test_an_unknown_4xx_is_permanent(status: int) -> None:
    result = await send_answered_by(status, plivo_error("something is wrong"))

    assert result.category is Category.PERMANENT
    assert result.error == "something is wrong"


async def test_a_long_error_is_cut_short() -> None:
    result = await send_answered_by(400, plivo_error("x" * 1000))

    assert result.error is not None
    assert len(result.error) == 300


# -- 3. network faults at the boundary ---------------------------------------------


@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        (httpx.ConnectError, ProviderUnreachable),
        # The connection closed after the request was written: it may have gone.
        (httpx.RemoteProtocolError, ProviderUncertain),
        (httpx.ReadTimeout, ProviderTimeout),
        (httpx.ConnectTimeout, ProviderUnreachable),
    ],
)
async def test_network_faults_become_provider_errors(
    fault: type[httpx.TransportError], raised: type[ProviderError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise fault("boom", request=request)

    provider = provider_answering(handler)
    try:
        with pytest.raises(raised) as caught:
            await provider.send(text())
    finally:
        await provider.aclose()

    assert isinstance(caught.value.__cause__, fault)
    assert caught.value.provider == "plivo"


# -- 4. signatures -----------------------------------------------------------------

STATUS_URL = "https://hooks.example.com/webhooks/plivo/status"
SIGNATURE_CASES = [
    pytest.param(STATUS_URL, {}, id="no-params"),
    pytest.param(CALLBACK, {}, id="query-only"),
    pytest.param(STATUS_URL, {"MessageUUID": MESSAGE_UUID, "Status": "sent"}, id="body-only"),
    pytest.param(
        CALLBACK, {"MessageUUID": MESSAGE_UUID, "Status": "delivered"}, id="query-and-body"
    ),
    pytest.param(
        STATUS_URL + "?mid=a%20b&attempt=2&attempt=1&empty=",
        {"Status": "failed"},
        id="query-sorted-and-decoded",
    ),
    pytest.param(
        STATUS_URL, {"a": "bc", "ab": "c", "A": "x", "a1": "", "a_": "_"}, id="names-alike"
    ),
    pytest.param(STATUS_URL, {"Text": "Zoë says 你好 👍 & = + %", "Émoji": "✓"}, id="unicode"),
    pytest.param(STATUS_URL, {"ErrorCode": "", "": "blank-name"}, id="empty-values"),
    pytest.param(CALLBACK, {"": ""}, id="one-field-that-joins-to-nothing"),
    pytest.param(STATUS_URL, {"Units": ["2", "1"], "To": "1"}, id="repeated-name"),
    pytest.param("http://localhost:8600/webhooks/plivo/status?mid=x", {"a": "1"}, id="port"),
    pytest.param(STATUS_URL + ";v=1?mid=1#frag", {"a": "1"}, id="path-params-and-fragment"),
]


def form_body(params: dict[str, Any]) -> bytes:
    return urlencode(params, doseq=True).encode()


@pytest.mark.parametrize(("url", "params"), SIGNATURE_CASES)
def test_signature_matches_the_sdk(url: str, params: dict[str, Any]) -> None:
    pairs = [
        (name, v)
        for name, value in params.items()
        for v in ([value] if isinstance(value, str) else value)
    ]

    assert signature(url, pairs, NONCE, AUTH_TOKEN) == sdk_signature(url, params)


@pytest.mark.parametrize(("url", "params"), SIGNATURE_CASES)
def test_verify_accepts_what_the_sdk_validator_accepts(url: str, params: dict[str, Any]) -> None:
    signed = sdk_signature(url, params)
    assert sdk_accepts(url, params, signed)

    assert offline_provider().verify_signature(webhook(url, form_body(params), signed))


def test_signature_matches_the_payload_plivo_documents() -> None:
    # Computed by hand from the scheme in the module docstring, not by either implementation.
    payload = f"{STATUS_URL}?mid=msg-0001.MessageUUID{MESSAGE_UUID}Statusdelivered.{NONCE}"
    digest = hmac.new(AUTH_TOKEN.encode(), payload.encode(), hashlib.sha256).digest()
    params = [("Status", "delivered"), ("MessageUUID", MESSAGE_UUID)]

    assert signature(CALLBACK, params, NONCE, AUTH_TOKEN) == base64.b64encode(digest).decode()


RECEIPT_URL = CALLBACK
RECEIPT_PARAMS = {
    "From": "15557654321",
    "MCC": "310",
    "MNC": "260",
    "MessageTime": "2024-11-28 17:46:00.123456",
    "MessageUUID": MESSAGE_UUID,
    "ParentMessageUUID": MESSAGE_UUID,
    "PartInfo": "1 of 1",
    "Sequence": "3",
    "Status": "delivered",
    "To": "15551234567",
    "TotalAmount": "0.00500",
    "TotalRate": "0.00500",
    "Type": "sms",
    "Units": "1",
}
RECEIPT_SIGNATURE = sdk_signature(RECEIPT_URL, RECEIPT_PARAMS)
RECEIPT_BODY = form_body(RECEIPT_PARAMS)


def test_verify_accepts_a_genuine_receipt() -> None:
    assert sdk_accepts(RECEIPT_URL, RECEIPT_PARAMS, RECEIPT_SIGNATURE)

    assert offline_provider().verify_signature(
        webhook(RECEIPT_URL, RECEIPT_BODY, RECEIPT_SIGNATURE)
    )


@pytest.mark.parametrize(
    "header",
    [
        f"{sdk_signature(RECEIPT_URL, RECEIPT_PARAMS, token='an-older-token')},{RECEIPT_SIGNATURE}",
        f"{RECEIPT_SIGNATURE},{sdk_signature(RECEIPT_URL, RECEIPT_PARAMS, token='a-newer-token')}",
        f"garbage,{RECEIPT_SIGNATURE},more-garbage",
    ],
    ids=["ours-last", "ours-first", "ours-in-the-middle"],
)
def test_verify_accepts_ours_among_several_signatures(header: str) -> None:
    assert sdk_accepts(RECEIPT_URL, RECEIPT_PARAMS, header)

    assert offline_provider().verify_signature(webhook(RECEIPT_URL, RECEIPT_BODY, header))


def test_verify_accepts_several_signatures_with_spaces_after_the_commas() -> None:
    header = f"garbage, {RECEIPT_SIGNATURE}"

    assert offline_provider().verify_signature(webhook(RECEIPT_URL, RECEIPT_BODY, header))


def test_verify_accepts_the_main_account_signature_when_we_hold_the_main_token() -> None:
    ma_signature = sdk_signature(RECEIPT_URL, RECEIPT_PARAMS, token=MAIN_ACCOUNT_TOKEN)
    request = webhook(RECEIPT_URL, RECEIPT_BODY, ma_signature=ma_signature)

    assert offline_provider(auth_token=MAIN_ACCOUNT_TOKEN).verify_signature(request)
    assert not offline_provider().verify_signature(request)


def test_verify_accepts_a_subaccount_signature_beside_a_main_account_one() -> None:
    ma_signature = sdk_signature(RECEIPT_URL, RECEIPT_PARAMS, token=MAIN_ACCOUNT_TOKEN)
    request = webhook(RECEIPT_URL, RECEIPT_BODY, RECEIPT_SIGNATURE, ma_signature=ma_signature)

    assert offline_provider().verify_signature(request)


def test_verify_refuses_a_request_without_a_signature() -> None:
    assert not offline_provider().verify_signature(webhook(RECEIPT_URL, RECEIPT_BODY))


def test_verify_refuses_a_request_without_a_nonce() -> None:
    request = webhook(RECEIPT_URL, RECEIPT_BODY, RECEIPT_SIGNATURE, nonce=None)

    assert not offline_provider().verify_signature(request)


@pytest.mark.parametrize("header", ["", ",", " , "], ids=["empty", "comma", "blank-list"])
def test_verify_refuses_an_empty_signature(header: str) -> None:
    request = webhook(RECEIPT_URL, RECEIPT_BODY, header)

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_an_empty_nonce() -> None:
    signed = sdk_signature(RECEIPT_URL, RECEIPT_PARAMS, nonce="")
    request = webhook(RECEIPT_URL, RECEIPT_BODY, signed, nonce="")

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_a_signature_made_with_another_token() -> None:
    other = sdk_signature(RECEIPT_URL, RECEIPT_PARAMS, token="another-auth-token")
    request = webhook(RECEIPT_URL, RECEIPT_BODY, other)

    assert not offline_provider().verify_signature(request)
    assert offline_provider(auth_token="another-auth-token").verify_signature(request)


def test_verify_refuses_a_tampered_nonce() -> None:
    assert not sdk_accepts(RECEIPT_URL, RECEIPT_PARAMS, RECEIPT_SIGNATURE, nonce="1" + NONCE[1:])

    request = webhook(RECEIPT_URL, RECEIPT_BODY, RECEIPT_SIGNATURE, nonce="1" + NONCE[1:])

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_a_tampered_body_parameter() -> None:
    tampered = {**RECEIPT_PARAMS, "Status": "undelivered"}
    assert not sdk_accepts(RECEIPT_URL, tampered, RECEIPT_SIGNATURE)

    request = webhook(RECEIPT_URL, form_body(tampered), RECEIPT_SIGNATURE)

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_an_added_parameter() -> None:
    added = {**RECEIPT_PARAMS, "ErrorCode": "30"}
    assert not sdk_accepts(RECEIPT_URL, added, RECEIPT_SIGNATURE)

    request = webhook(RECEIPT_URL, form_body(added), RECEIPT_SIGNATURE)

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_a_removed_parameter() -> None:
    removed = {k: v for k, v in RECEIPT_PARAMS.items() if k != "Sequence"}
    assert not sdk_accepts(RECEIPT_URL, removed, RECEIPT_SIGNATURE)

    request = webhook(RECEIPT_URL, form_body(removed), RECEIPT_SIGNATURE)

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_an_added_repeat_of_a_signed_parameter() -> None:
    body = urlencode([*RECEIPT_PARAMS.items(), ("Status", "failed")]).encode()

    assert not offline_provider().verify_signature(webhook(RECEIPT_URL, body, RECEIPT_SIGNATURE))


def test_the_scheme_cannot_tell_where_a_name_ends_and_neither_can_we() -> None:
    # Plivo concatenates names and values with no separator, so {"ab": "c"} and
    # {"a": "bc"} sign alike. A limit of V3 itself: ours agrees with the SDK.
    signed = sdk_signature(STATUS_URL, {"ab": "c"})
    assert sdk_accepts(STATUS_URL, {"a": "bc"}, signed)

    request = webhook(STATUS_URL, form_body({"a": "bc"}), signed)

    assert offline_provider().verify_signature(request)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/webhooks/plivo/other?mid=msg-0001",
        "https://hooks.example.com/webhooks/plivo/status?mid=msg-0002",
        "https://hooks.example.com/webhooks/plivo/status",
        "https://hooks.example.com/webhooks/plivo/status?mid=msg-0001&extra=1",
        "https://evil.example.com/webhooks/plivo/status?mid=msg-0001",
        "http://hooks.example.com/webhooks/plivo/status?mid=msg-0001",
        "https://hooks.example.com:8443/webhooks/plivo/status?mid=msg-0001",
    ],
    ids=["path", "mid", "query-dropped", "query-added", "host", "scheme", "port"],
)
def test_verify_refuses_a_tampered_url(url: str) -> None:
    assert not sdk_accepts(url, RECEIPT_PARAMS, RECEIPT_SIGNATURE)

    request = webhook(url, RECEIPT_BODY, RECEIPT_SIGNATURE)

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_the_older_v2_signature_which_leaves_the_body_unsigned() -> None:
    v2 = base64.b64encode(
        hmac.new(AUTH_TOKEN.encode(), (STATUS_URL + NONCE).encode(), hashlib.sha256).digest()
    ).decode()

    assert not offline_provider().verify_signature(webhook(RECEIPT_URL, RECEIPT_BODY, v2))


def test_verify_refuses_a_v3_signature_sent_under_another_header() -> None:
    headers = {"x-plivo-signature": RECEIPT_SIGNATURE, "x-plivo-signature-v3-nonce": NONCE}
    request = WebhookRequest(url=RECEIPT_URL, headers=headers, body=RECEIPT_BODY, content_type=FORM)

    assert not offline_provider().verify_signature(request)


@pytest.mark.parametrize(
    "garbage",
    [
        "garbage",
        "=",
        "not base64 at all!",
        RECEIPT_SIGNATURE[:-2],
        RECEIPT_SIGNATURE + "A",
        RECEIPT_SIGNATURE.lower(),
        base64.b64encode(b"\x00" * 32).decode(),
        "A" * 10_000,
    ],
    ids=["word", "padding", "punctuation", "short", "long", "case", "zeros", "huge"],
)
def test_verify_refuses_a_garbage_signature(garbage: str) -> None:
    request = webhook(RECEIPT_URL, RECEIPT_BODY, garbage)

    assert not offline_provider().verify_signature(request)


@pytest.mark.parametrize("garbage", ["ñññ", "é" * 44], ids=["short", "signature-length"])
def test_verify_refuses_a_non_ascii_signature(garbage: str) -> None:
    headers = {"x-plivo-signature-v3": garbage, "x-plivo-signature-v3-nonce": NONCE}
    request = WebhookRequest(url=RECEIPT_URL, headers=headers, body=RECEIPT_BODY, content_type=FORM)

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_a_non_ascii_nonce() -> None:
    headers = {"x-plivo-signature-v3": RECEIPT_SIGNATURE, "x-plivo-signature-v3-nonce": "ñ" * 20}
    request = WebhookRequest(url=RECEIPT_URL, headers=headers, body=RECEIPT_BODY, content_type=FORM)

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_a_body_that_is_not_utf8() -> None:
    body = RECEIPT_BODY + b"&Text=\xff\xfe"

    assert not offline_provider().verify_signature(webhook(RECEIPT_URL, body, RECEIPT_SIGNATURE))


def test_verify_refuses_a_url_it_cannot_parse_without_raising() -> None:
    request = webhook("https://[::1/webhooks/plivo/status", RECEIPT_BODY, RECEIPT_SIGNATURE)

    assert not offline_provider().verify_signature(request)


form_text = st.text(max_size=20)
# The SDK parses the URL as bytes and cannot take non-ASCII in the query, so the
# query strategy stays within printable ASCII; bodies may be any text.
query_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10)


@settings(max_examples=300, deadline=None)
@given(
    params=st.dictionaries(form_text, form_text, max_size=8),
    query=st.dictionaries(query_text, query_text, max_size=3),
    nonce=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=24),
)
def test_signature_equals_the_sdks_for_any_form(
    params: dict[str, str], query: dict[str, str], nonce: str
) -> None:
    url = STATUS_URL + (f"?{urlencode(query)}" if query else "")

    ours = signature(url, params.items(), nonce, AUTH_TOKEN)

    assert ours == sdk_signature(url, params, nonce=nonce)


@settings(max_examples=200, deadline=None)
@given(params=st.dictionaries(form_text, form_text, max_size=8))
def test_verify_accepts_any_form_the_sdk_signed(params: dict[str, str]) -> None:
    signed = sdk_signature(RECEIPT_URL, params)
    assert sdk_accepts(RECEIPT_URL, params, signed)

    assert offline_provider().verify_signature(webhook(RECEIPT_URL, form_body(params), signed))


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(form_text, form_text, max_size=8),
    name=st.text(min_size=1, max_size=20),
    value=form_text,
)
def test_verify_refuses_any_added_or_changed_field(
    params: dict[str, str], name: str, value: str
) -> None:
    if params.get(name) == value:
        return
    changed = {**params, name: value}
    signed = sdk_signature(RECEIPT_URL, params)

    assert not offline_provider().verify_signature(webhook(RECEIPT_URL, form_body(changed), signed))


@settings(max_examples=200, deadline=None)
@given(
    signature_header=st.text(max_size=60), nonce=st.text(max_size=30), body=st.binary(max_size=80)
)
def test_verify_never_raises_on_garbage(signature_header: str, nonce: str, body: bytes) -> None:
    headers = {"x-plivo-signature-v3": signature_header, "x-plivo-signature-v3-nonce": nonce}
    request = WebhookRequest(url=RECEIPT_URL, headers=headers, body=body, content_type=FORM)

    assert offline_provider().verify_signature(request) is False


# -- 5. receipts ----------------------------------------------------------------------


def receipt(url: str = RECEIPT_URL, content_type: str = FORM, **fields: str) -> WebhookRequest:
    return webhook(url, form_body({**RECEIPT_PARAMS, **fields}), content_type=content_type)


def test_a_delivered_receipt_is_ok() -> None:
    parsed = offline_provider().parse_receipt(receipt())

    assert parsed.provider_message_id == MESSAGE_UUID
    assert parsed.status == Status.DELIVERED
    assert parsed.category is Category.OK
    assert parsed.error_code is None
    assert parsed.message_id == "msg-0001"


def test_a_delivered_receipt_with_plivos_no_error_code_is_ok() -> None:
    parsed = offline_provider().parse_receipt(receipt(ErrorCode="000"))

    assert parsed.status == Status.DELIVERED
    assert parsed.category is Category.OK
    assert parsed.error_code is None


@pytest.mark.parametrize("failure", ["undelivered", "failed", "rejected"])
@pytest.mark.parametrize(("code", "category"), sorted(ERROR_CATEGORIES.items()))
def test_each_failure_receipt_carries_its_codes_category(
    failure: str, code: str, category: Category
) -> None:
    parsed = offline_provider().parse_receipt(receipt(Status=failure, ErrorCode=code))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code == code
    assert parsed.category is category


def test_a_spam_rejection_receipt_is_a_carrier_block() -> None:
    parsed = offline_provider().parse_receipt(receipt(Status="undelivered", ErrorCode="30"))

    assert parsed.category is Category.CARRIER_BLOCK


def test_a_stop_receipt_is_opted_out() -> None:
    parsed = offline_provider().parse_receipt(receipt(Status="failed", ErrorCode="200"))

    assert parsed.category is Category.OPTED_OUT


@pytest.mark.parametrize(("raw", "code"), [("030", "30"), (" 50 ", "50"), ("0200", "200")])
def test_a_padded_error_code_is_read_as_plivos_code(raw: str, code: str) -> None:
    parsed = offline_provider().parse_receipt(receipt(Status="undelivered", ErrorCode=raw))

    assert parsed.error_code == code
    assert parsed.category is ERROR_CATEGORIES[code]


@pytest.mark.parametrize("code", ["", "000", "0"], ids=["blank", "zeros", "zero"])
def test_a_failure_without_a_code_is_permanent(code: str) -> None:
    parsed = offline_provider().parse_receipt(receipt(Status="failed", ErrorCode=code))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code is None
    assert parsed.category is Category.PERMANENT


def test_a_failure_with_an_unknown_code_is_permanent() -> None:
    parsed = offline_provider().parse_receipt(receipt(Status="undelivered", ErrorCode="777"))

    assert parsed.error_code == "777"
    assert parsed.category is Category.PERMANENT


def test_a_sent_receipt_is_sent() -> None:
    parsed = offline_provider().parse_receipt(receipt(Status="sent"))

    assert parsed.status == Status.SENT
    assert parsed.category is Category.OK


@pytest.mark.parametrize("progress", ["queued", "read", "something-new"])
def test_an_intermediate_receipt_reports_progress_only(progress: str) -> None:
    parsed = offline_provider().parse_receipt(receipt(Status=progress))

    assert parsed.provider_message_id == MESSAGE_UUID
    assert parsed.status == progress
    assert parsed.category is Category.OK
    assert parsed.error_code is None


def test_a_receipt_names_our_message_from_the_callback_query() -> None:
    url = "https://hooks.example.com/webhooks/plivo/status?attempt=2&mid=msg-42"

    assert offline_provider().parse_receipt(receipt(url=url)).message_id == "msg-42"


def test_a_receipt_without_mid_has_no_message_id() -> None:
    parsed = offline_provider().parse_receipt(receipt(url=STATUS_URL))

    assert parsed.message_id is None


@pytest.mark.parametrize("missing", ["MessageUUID", "Status"])
def test_a_receipt_without_a_required_field_is_invalid(missing: str) -> None:
    params = {k: v for k, v in RECEIPT_PARAMS.items() if k != missing}

    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(webhook(RECEIPT_URL, form_body(params)))


@pytest.mark.parametrize("content_type", [JSON, "text/plain", "multipart/form-data", ""])
def test_a_receipt_that_is_not_form_encoded_is_invalid(content_type: str) -> None:
    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(receipt(content_type=content_type))


def test_a_json_receipt_is_invalid_even_when_labelled_as_a_form() -> None:
    body = json.dumps(RECEIPT_PARAMS).encode()

    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(webhook(RECEIPT_URL, body))


def test_a_form_receipt_with_a_charset_is_accepted() -> None:
    parsed = offline_provider().parse_receipt(receipt(content_type=f"{FORM}; charset=UTF-8"))

    assert parsed.status == Status.DELIVERED


@pytest.mark.parametrize(
    "body",
    [b"MessageUUID=abc&Status=delivered&Text=\xff", b"\x00\x01\x02", b"", b"garbage"],
    ids=["not-utf8", "binary", "empty", "no-fields"],
)
def test_a_garbage_receipt_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(webhook(RECEIPT_URL, body))


def test_a_receipt_on_a_url_that_cannot_be_parsed_is_invalid() -> None:
    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(receipt(url="https://[::1/webhooks/plivo/status?mid=1"))
