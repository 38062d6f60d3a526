"""The Twilio adapter, checked against Twilio's official Python SDK.

The SDK is the reference: the request our adapter sends must be the one
``client.messages.create`` sends, and our webhook signatures must be the ones
``twilio.request_validator.RequestValidator`` computes and accepts.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.http import HttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from worker.errors import (
    InvalidWebhook,
    ProviderError,
    ProviderTimeout,
    ProviderUncertain,
    ProviderUnreachable,
)
from worker.models import Category, Status
from worker.providers.base import OutboundText, SendResult, WebhookRequest
from worker.providers.twilio import (
    ERROR_CATEGORIES,
    MAX_VALIDITY_S,
    TwilioProvider,
    classify,
    signature,
)

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "12345678901234567890123456789012"
API = "https://api.twilio.com"
FORM = "application/x-www-form-urlencoded"
CALLBACK = "https://hooks.example.com/twilio/status?mid=msg-0001"
# Twilio's documented ValidityPeriod range (the SDK's create() docstring, errors 21624/90007).
TWILIO_MAX_VALIDITY_PERIOD_S = 36_000

MESSAGE_SID = "SM0123456789abcdef0123456789abcdef"
CREATED_MESSAGE = {
    "account_sid": ACCOUNT_SID,
    "api_version": "2010-04-01",
    "body": "Hello",
    "date_created": "Thu, 28 Nov 2024 17:46:00 +0000",
    "date_sent": None,
    "date_updated": "Thu, 28 Nov 2024 17:46:00 +0000",
    "direction": "outbound-api",
    "error_code": None,
    "error_message": None,
    "from": "+15557654321",
    "messaging_service_sid": None,
    "num_media": "0",
    "num_segments": "1",
    "price": None,
    "price_unit": "USD",
    "sid": MESSAGE_SID,
    "status": "queued",
    "subresource_uris": {
        "media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{MESSAGE_SID}/Media.json"
    },
    "to": "+15551234567",
    "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{MESSAGE_SID}.json",
}

Handler = Callable[[httpx.Request], httpx.Response]


# -- helpers -----------------------------------------------------------------


class RecordingHttpClient(HttpClient):
    """An SDK http client that records each request and answers 201 Created."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(logging.getLogger("test.twilio"), is_async=False)
        self.answer = json.dumps(answer)
        self.requests: list[dict[str, Any]] = []

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        self.requests.append(
            {
                "method": method,
                "url": uri,
                "params": params,
                "data": data,
                "auth": auth,
                "headers": headers or {},
            }
        )
        return TwilioResponse(201, self.answer)


class MultiDict:
    """The ``getall`` shape the SDK's validator uses for repeated form names (Flask's MultiDict)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    def __iter__(self) -> Iterator[str]:
        return iter(name for name, _ in self.pairs)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def getall(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


def provider_answering(handler: Handler) -> TwilioProvider:
    client = httpx.AsyncClient(
        base_url=API, auth=(ACCOUNT_SID, AUTH_TOKEN), transport=httpx.MockTransport(handler)
    )
    return TwilioProvider(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, base_url=API, client=client
    )


def offline_provider(auth_token: str = AUTH_TOKEN) -> TwilioProvider:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("this test must not send anything")

    client = httpx.AsyncClient(base_url=API, transport=httpx.MockTransport(unreachable))
    return TwilioProvider(account_sid=ACCOUNT_SID, auth_token=auth_token, client=client)


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


def twilio_error(code: int, status: int, message: str = "Something went wrong") -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def webhook(
    url: str,
    body: bytes,
    signature_header: str | None = None,
    content_type: str = FORM,
) -> WebhookRequest:
    headers = httpx.Headers()
    if signature_header is not None:
        headers["X-Twilio-Signature"] = signature_header
    return WebhookRequest(url=url, headers=headers, body=body, content_type=content_type)


def signed_by_sdk(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


# -- 1. request-shape parity ---------------------------------------------------


def sdk_request(message: OutboundText) -> dict[str, Any]:
    recorder = RecordingHttpClient(CREATED_MESSAGE)
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=recorder)
    kwargs: dict[str, Any] = {
        "to": message.to,
        "from_": message.sender,
        "body": message.body,
        "status_callback": message.status_callback_url,
    }
    if message.validity_s is not None:
        kwargs["validity_period"] = message.validity_s
    created = client.messages.create(**kwargs)
    assert created.sid == MESSAGE_SID
    [recorded] = recorder.requests
    # The body the SDK's default (requests-based) client would put on the wire.
    wire = requests.Request(
        recorded["method"],
        recorded["url"],
        params=recorded["params"],
        data=recorded["data"],
        headers=recorded["headers"],
    ).prepare()
    recorded["wire_body"] = wire.body
    recorded["wire_content_type"] = wire.headers["Content-Type"]
    return recorded


async def our_request(message: OutboundText) -> httpx.Request:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(201, json=CREATED_MESSAGE)

    provider = provider_answering(handler)
    try:
        result = await provider.send(message)
    finally:
        await provider.aclose()
    assert result.category is Category.OK
    [request] = captured
    return request


def basic_credentials(request: httpx.Request) -> tuple[str, str]:
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    return user, password


PARITY_CASES = [
    pytest.param(text(), {"To", "From", "Body", "StatusCallback", "ValidityPeriod"}, id="validity"),
    pytest.param(text(validity_s=None), {"To", "From", "Body", "StatusCallback"}, id="no-validity"),
]


@pytest.mark.parametrize(("message", "field_names"), PARITY_CASES)
async def test_send_posts_the_same_form_as_the_official_sdk(
    message: OutboundText, field_names: set[str]
) -> None:
    theirs = sdk_request(message)
    ours = await our_request(message)

    assert ours.method == theirs["method"] == "POST"
    assert str(ours.url) == theirs["url"]
    assert ours.url.path == urlsplit(theirs["url"]).path
    assert ours.url.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert not ours.url.query and not theirs["params"]
    assert basic_credentials(ours) == theirs["auth"] == (ACCOUNT_SID, AUTH_TOKEN)

    our_fields = parse_qsl(
        ours.content.decode("ascii"), keep_blank_values=True, strict_parsing=True
    )
    sdk_fields = parse_qsl(theirs["wire_body"], keep_blank_values=True, strict_parsing=True)
    assert dict(our_fields) == dict(sdk_fields)
    assert sorted(our_fields) == sorted(sdk_fields)  # and no name sent twice on either side
    assert {name for name, _ in our_fields} == field_names
    assert dict(our_fields)["Body"] == message.body


async def test_send_is_form_encoded_like_the_sdk() -> None:
    theirs = sdk_request(text())
    ours = await our_request(text())

    assert theirs["headers"]["Content-Type"] == FORM
    assert theirs["wire_content_type"] == FORM
    assert ours.headers["content-type"] == FORM


# -- 2. response parsing ---------------------------------------------------------


async def test_a_created_message_is_ok_with_its_sid() -> None:
    result = await send_answered_by(201, CREATED_MESSAGE)

    assert result.ok
    assert result.category is Category.OK
    assert result.provider_message_id == MESSAGE_SID
    assert result.error_code is None


@pytest.mark.parametrize(("code", "category"), sorted(ERROR_CATEGORIES.items()))
async def test_each_known_twilio_error_code_has_its_category(code: str, category: Category) -> None:
    result = await send_answered_by(400, twilio_error(int(code), 400, f"error {code}"))

    assert result.category is category
    assert result.error_code == code
    assert result.error == f"error {code}"
    assert result.provider_message_id is None


@pytest.mark.parametrize(
    ("code", "category"),
    [
        # DESIGN.md's table.
        ("30007", Category.CARRIER_BLOCK),
        ("21211", Category.BAD_NUMBER),
        ("30005", Category.BAD_NUMBER),
        ("30006", Category.BAD_NUMBER),
        ("21610", Category.OPTED_OUT),
        ("20429", Category.THROTTLED),
        ("30022", Category.THROTTLED),
        ("30008", Category.AMBIGUOUS),
        ("30003", Category.AMBIGUOUS),
        # Twilio's error pages.
        ("30034", Category.CARRIER_BLOCK),
        ("21614", Category.BAD_NUMBER),
        ("21611", Category.THROTTLED),
        ("30023", Category.THROTTLED),
        ("30027", Category.THROTTLED),
        ("63017", Category.THROTTLED),
        ("30017", Category.TRANSIENT),
        ("21730", Category.TRANSIENT),
        ("20003", Category.TRANSIENT),
        # Not in the table: a 4xx Twilio answer about the request itself is permanent.
        ("21602", Category.PERMANENT),  # body required
        ("30036", Category.PERMANENT),  # validity period expired
    ],
)
def test_the_codes_design_md_and_twilio_name_have_their_categories(
    code: str, category: Category
) -> None:
    assert classify(code, 400) is category


async def test_an_invalid_to_number_is_a_bad_number_with_twilios_message() -> None:
    message = "The 'To' number +1555 is not a valid phone number."
    result = await send_answered_by(400, twilio_error(21211, 400, message))

    assert result.category is Category.BAD_NUMBER
    assert result.error_code == "21211"
    assert result.error == message


async def test_429_is_throttled_and_honours_retry_after() -> None:
    result = await send_answered_by(
        429, twilio_error(20429, 429, "Too Many Requests"), headers={"Retry-After": "3"}
    )

    assert result.category is Category.THROTTLED
    assert result.retry_after_s == 3


async def test_429_without_a_twilio_body_is_still_throttled() -> None:
    provider = provider_answering(
        lambda request: httpx.Response(429, text="slow down", headers={"Retry-After": "3"})
    )
    try:
        result = await provider.send(text())
    finally:
        await provider.aclose()

    assert result.category is Category.THROTTLED
    assert result.retry_after_s == 3
    assert result.error_code == "http_429"


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateways_502_or_504_leaves_it_uncertain_whether_the_text_went(status: int) -> None:
    # A gateway answered, not twilio: the provider behind it may have taken the text.
    with pytest.raises(ProviderUncertain):
        await send_answered_by(status, {"message": "Service Unavailable"})


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_transient(status: int) -> None:
    result = await send_answered_by(status, {"message": "Service Unavailable"})

    assert result.category is Category.TRANSIENT
    assert result.error_code == f"http_{status}"


async def test_a_server_error_with_an_html_body_is_transient() -> None:
    provider = provider_answering(lambda request: httpx.Response(503, text="<html>oops</html>"))
    try:
        result = await provider.send(text())
    finally:
        await provider.aclose()

    assert result.category is Category.TRANSIENT
    assert result.error == "Service Unavailable"


@pytest.mark.parametrize(
    "payload",
    [twilio_error(20003, 401, "Authenticate"), {}],
    ids=["twilio-20003", "bare-401"],
)
async def test_an_authentication_failure_is_transient(payload: dict[str, Any]) -> None:
    result = await send_answered_by(401, payload)

    assert result.category is Category.TRANSIENT


async def test_an_unknown_400_code_is_permanent() -> None:
    unknown = 21606  # 'From' number is not a valid, SMS-capable number for this account
    assert str(unknown) not in ERROR_CATEGORIES

    result = await send_answered_by(400, twilio_error(unknown, 400))

    assert result.category is Category.PERMANENT
    assert result.error_code == str(unknown)


# -- 3. network faults at the boundary ---------------------------------------------


@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        (httpx.ConnectError, ProviderUnreachable),
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
    assert caught.value.provider == "twilio"


# -- 4. signatures -----------------------------------------------------------------


SIGNATURE_CASES = [
    pytest.param("https://hooks.example.com/twilio/status", {}, id="no-params"),
    pytest.param(
        "https://hooks.example.com/twilio/status",
        {"MessageSid": MESSAGE_SID, "MessageStatus": "delivered", "To": "+15551234567"},
        id="receipt",
    ),
    pytest.param(
        "https://hooks.example.com/twilio/status",
        {"a": "bc", "ab": "c", "A": "x", "a1": "", "a_": "_"},
        id="names-that-concatenate-alike",
    ),
    pytest.param(
        "https://hooks.example.com/twilio/status",
        {"Body": "Zoë says 你好 👍 & = + %", "Émoji": "✓"},
        id="unicode",
    ),
    pytest.param(
        "https://hooks.example.com/twilio/status",
        {"ErrorCode": "", "": "blank-name", "Body": ""},
        id="empty-values",
    ),
    pytest.param(
        "https://hooks.example.com/twilio/status?mid=msg-0001&attempt=2",
        {"MessageSid": MESSAGE_SID, "MessageStatus": "sent"},
        id="query-string",
    ),
    pytest.param(
        "http://localhost:8080/twilio/status?mid=x%20y",
        {"MessageStatus": "failed"},
        id="explicit-port",
    ),
]


@pytest.mark.parametrize(("url", "params"), SIGNATURE_CASES)
def test_signature_matches_the_sdk(url: str, params: dict[str, str]) -> None:
    assert signature(url, params.items(), AUTH_TOKEN) == signed_by_sdk(url, params)


def test_signature_matches_the_sdk_for_repeated_names() -> None:
    url = "https://hooks.example.com/twilio/inbound"
    pairs = [("MediaUrl", "https://b.example/2"), ("MediaUrl", "https://a.example/1"), ("To", "1")]

    ours = signature(url, pairs, AUTH_TOKEN)

    assert ours == RequestValidator(AUTH_TOKEN).compute_signature(url, MultiDict(pairs))
    assert ours == signature(url, list(reversed(pairs)), AUTH_TOKEN)


@pytest.mark.parametrize(("url", "params"), SIGNATURE_CASES)
def test_verify_accepts_what_the_sdk_validator_accepts(url: str, params: dict[str, str]) -> None:
    sdk_signature = signed_by_sdk(url, params)
    assert RequestValidator(AUTH_TOKEN).validate(url, params, sdk_signature)

    request = webhook(url, urlencode(params).encode(), sdk_signature)

    assert offline_provider().verify_signature(request)


@pytest.mark.parametrize(
    ("signed_url", "request_url"),
    [
        ("https://hooks.example.com/cb?mid=1", "https://hooks.example.com/cb?mid=1"),
        ("https://hooks.example.com:443/cb?mid=1", "https://hooks.example.com/cb?mid=1"),
        ("https://hooks.example.com/cb?mid=1", "https://hooks.example.com:443/cb?mid=1"),
        ("https://hooks.example.com:443/cb?mid=1", "https://hooks.example.com:443/cb?mid=1"),
        ("http://hooks.example.com:80/cb", "http://hooks.example.com/cb"),
        ("http://hooks.example.com/cb", "http://hooks.example.com:80/cb"),
        ("https://hooks.example.com:8443/cb", "https://hooks.example.com:8443/cb"),
    ],
)
def test_verify_accepts_urls_with_and_without_the_default_port(
    signed_url: str, request_url: str
) -> None:
    params = {"MessageSid": MESSAGE_SID, "MessageStatus": "delivered"}
    sdk_signature = signed_by_sdk(signed_url, params)
    assert RequestValidator(AUTH_TOKEN).validate(request_url, params, sdk_signature)

    request = webhook(request_url, urlencode(params).encode(), sdk_signature)

    assert offline_provider().verify_signature(request)


@pytest.mark.parametrize(
    ("signed_url", "request_url"),
    [
        ("https://Hooks.Example.com:443/cb", "https://Hooks.Example.com/cb"),
        ("https://user:pw@hooks.example.com:443/cb", "https://user:pw@hooks.example.com/cb"),
        ("https://[2001:db8::1]:443/cb", "https://[2001:db8::1]/cb"),
    ],
    ids=["mixed-case-host", "userinfo", "ipv6"],
)
def test_verify_accepts_default_port_variants_of_any_host(
    signed_url: str, request_url: str
) -> None:
    params = {"MessageSid": MESSAGE_SID}
    sdk_signature = signed_by_sdk(signed_url, params)
    assert RequestValidator(AUTH_TOKEN).validate(request_url, params, sdk_signature)

    request = webhook(request_url, urlencode(params).encode(), sdk_signature)

    assert offline_provider().verify_signature(request)


RECEIPT_URL = "https://hooks.example.com/twilio/status?mid=msg-0001"
RECEIPT_PARAMS = {
    "AccountSid": ACCOUNT_SID,
    "ApiVersion": "2010-04-01",
    "From": "+15557654321",
    "MessageSid": MESSAGE_SID,
    "MessageStatus": "delivered",
    "SmsSid": MESSAGE_SID,
    "SmsStatus": "delivered",
    "To": "+15551234567",
}
RECEIPT_SIGNATURE = RequestValidator(AUTH_TOKEN).compute_signature(RECEIPT_URL, RECEIPT_PARAMS)


def test_verify_accepts_a_genuine_receipt() -> None:
    request = webhook(RECEIPT_URL, urlencode(RECEIPT_PARAMS).encode(), RECEIPT_SIGNATURE)

    assert offline_provider().verify_signature(request)


def test_verify_refuses_a_request_without_a_signature() -> None:
    request = webhook(RECEIPT_URL, urlencode(RECEIPT_PARAMS).encode())

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_an_empty_signature() -> None:
    request = webhook(RECEIPT_URL, urlencode(RECEIPT_PARAMS).encode(), "")

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_a_signature_made_with_another_token() -> None:
    other = signed_by_sdk(RECEIPT_URL, RECEIPT_PARAMS, token="another-auth-token")
    request = webhook(RECEIPT_URL, urlencode(RECEIPT_PARAMS).encode(), other)

    assert not offline_provider().verify_signature(request)
    assert offline_provider(auth_token="another-auth-token").verify_signature(request)


def test_verify_refuses_a_tampered_body_parameter() -> None:
    tampered = {**RECEIPT_PARAMS, "MessageStatus": "undelivered"}
    assert not RequestValidator(AUTH_TOKEN).validate(RECEIPT_URL, tampered, RECEIPT_SIGNATURE)

    request = webhook(RECEIPT_URL, urlencode(tampered).encode(), RECEIPT_SIGNATURE)

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_an_added_parameter() -> None:
    added = {**RECEIPT_PARAMS, "ErrorCode": "30007"}
    assert not RequestValidator(AUTH_TOKEN).validate(RECEIPT_URL, added, RECEIPT_SIGNATURE)

    request = webhook(RECEIPT_URL, urlencode(added).encode(), RECEIPT_SIGNATURE)

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_an_added_repeat_of_a_signed_parameter() -> None:
    body = urlencode([*RECEIPT_PARAMS.items(), ("MessageStatus", "failed")]).encode()

    assert not offline_provider().verify_signature(webhook(RECEIPT_URL, body, RECEIPT_SIGNATURE))


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/twilio/other?mid=msg-0001",
        "https://hooks.example.com/twilio/status?mid=msg-0002",
        "https://hooks.example.com/twilio/status",
        "https://hooks.example.com/twilio/status?mid=msg-0001&extra=1",
        "https://evil.example.com/twilio/status?mid=msg-0001",
        "http://hooks.example.com/twilio/status?mid=msg-0001",
    ],
    ids=["path", "mid", "query-dropped", "query-added", "host", "scheme"],
)
def test_verify_refuses_a_tampered_url(url: str) -> None:
    assert not RequestValidator(AUTH_TOKEN).validate(url, RECEIPT_PARAMS, RECEIPT_SIGNATURE)

    request = webhook(url, urlencode(RECEIPT_PARAMS).encode(), RECEIPT_SIGNATURE)

    assert not offline_provider().verify_signature(request)


@pytest.mark.parametrize(
    "garbage",
    ["garbage", "=", "not base64 at all!", RECEIPT_SIGNATURE[:-2], RECEIPT_SIGNATURE + "A"],
)
def test_verify_refuses_a_garbage_signature(garbage: str) -> None:
    request = webhook(RECEIPT_URL, urlencode(RECEIPT_PARAMS).encode(), garbage)

    assert not offline_provider().verify_signature(request)


@pytest.mark.parametrize("garbage", ["ñññ", "é" * 28], ids=["short", "signature-length"])
def test_verify_refuses_a_non_ascii_signature(garbage: str) -> None:
    request = WebhookRequest(
        url=RECEIPT_URL,
        headers={"x-twilio-signature": garbage},
        body=urlencode(RECEIPT_PARAMS).encode(),
        content_type=FORM,
    )

    assert not offline_provider().verify_signature(request)


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com:abc/cb", "https://hooks.example.com:99999/cb"]
)
def test_verify_refuses_a_url_with_a_malformed_port(url: str) -> None:
    request = webhook(url, urlencode(RECEIPT_PARAMS).encode(), RECEIPT_SIGNATURE)

    assert not offline_provider().verify_signature(request)


def test_verify_refuses_a_body_that_is_not_utf8() -> None:
    body = b"MessageSid=" + MESSAGE_SID.encode() + b"&Body=\xff\xfe"

    assert not offline_provider().verify_signature(webhook(RECEIPT_URL, body, RECEIPT_SIGNATURE))


form_text = st.text(max_size=20)


@settings(max_examples=300, deadline=None)
@given(params=st.dictionaries(form_text, form_text, max_size=8), query=st.booleans())
def test_signature_equals_the_sdks_for_any_form(params: dict[str, str], query: bool) -> None:
    url = "https://hooks.example.com/twilio/status" + ("?mid=msg-0001" if query else "")

    assert signature(url, params.items(), AUTH_TOKEN) == signed_by_sdk(url, params)


@settings(max_examples=200, deadline=None)
@given(params=st.dictionaries(form_text, form_text, max_size=8))
def test_verify_accepts_any_form_the_sdk_signed(params: dict[str, str]) -> None:
    sdk_signature = signed_by_sdk(RECEIPT_URL, params)
    request = webhook(RECEIPT_URL, urlencode(params).encode(), sdk_signature)

    assert offline_provider().verify_signature(request)


# -- 5. receipts ----------------------------------------------------------------------


def receipt(url: str = RECEIPT_URL, content_type: str = FORM, **fields: str) -> WebhookRequest:
    params = {**RECEIPT_PARAMS, **fields}
    return webhook(url, urlencode(params).encode(), content_type=content_type)


def test_a_delivered_receipt_is_ok() -> None:
    parsed = offline_provider().parse_receipt(receipt())

    assert parsed.provider_message_id == MESSAGE_SID
    assert parsed.status == Status.DELIVERED
    assert parsed.category is Category.OK
    assert parsed.error_code is None


def test_an_undelivered_receipt_carries_its_error_category() -> None:
    request = receipt(MessageStatus="undelivered", SmsStatus="undelivered", ErrorCode="30007")

    parsed = offline_provider().parse_receipt(request)

    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code == "30007"
    assert parsed.category is Category.CARRIER_BLOCK


def test_a_failed_receipt_is_undelivered() -> None:
    request = receipt(MessageStatus="failed", SmsStatus="failed", ErrorCode="30008")

    parsed = offline_provider().parse_receipt(request)

    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code == "30008"
    assert parsed.category is Category.AMBIGUOUS


def test_a_failed_receipt_without_a_code_is_permanent() -> None:
    parsed = offline_provider().parse_receipt(receipt(MessageStatus="failed"))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.category is Category.PERMANENT


def test_a_sent_receipt_is_sent() -> None:
    parsed = offline_provider().parse_receipt(receipt(MessageStatus="sent", SmsStatus="sent"))

    assert parsed.status == Status.SENT
    assert parsed.category is Category.OK


@pytest.mark.parametrize("progress", ["queued", "sending", "accepted"])
def test_an_intermediate_receipt_reports_progress_only(progress: str) -> None:
    parsed = offline_provider().parse_receipt(receipt(MessageStatus=progress, SmsStatus=progress))

    assert parsed.provider_message_id == MESSAGE_SID
    assert parsed.status == progress
    assert parsed.category is Category.OK
    assert parsed.error_code is None


def test_a_receipt_names_our_message_from_the_callback_query() -> None:
    parsed = offline_provider().parse_receipt(
        receipt(url="https://hooks.example.com/twilio/status?attempt=2&mid=msg-42")
    )

    assert parsed.message_id == "msg-42"


def test_a_receipt_without_mid_has_no_message_id() -> None:
    parsed = offline_provider().parse_receipt(receipt(url="https://hooks.example.com/cb"))

    assert parsed.message_id is None


def test_a_receipt_without_message_sid_is_invalid() -> None:
    params = {k: v for k, v in RECEIPT_PARAMS.items() if k not in ("MessageSid", "SmsSid")}
    request = webhook(RECEIPT_URL, urlencode(params).encode())

    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(request)


def test_a_receipt_without_a_status_is_invalid() -> None:
    params = {k: v for k, v in RECEIPT_PARAMS.items() if k not in ("MessageStatus", "SmsStatus")}
    request = webhook(RECEIPT_URL, urlencode(params).encode())

    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(request)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
def test_a_receipt_that_is_not_form_encoded_is_invalid(content_type: str) -> None:
    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(receipt(content_type=content_type))


def test_a_form_receipt_with_a_charset_is_accepted() -> None:
    parsed = offline_provider().parse_receipt(receipt(content_type=f"{FORM}; charset=utf-8"))

    assert parsed.status == Status.DELIVERED


def test_a_receipt_that_is_not_utf8_is_invalid() -> None:
    request = webhook(RECEIPT_URL, b"MessageSid=SM1&MessageStatus=delivered&Body=\xff")

    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(request)


# -- 6. validity period ------------------------------------------------------------------


async def sent_validity_period(validity_s: int | None) -> str | None:
    """The ValidityPeriod our send puts on the wire for a text that may wait ``validity_s``."""
    ours = await our_request(text(validity_s=validity_s))
    return dict(parse_qsl(ours.content.decode("ascii"))).get("ValidityPeriod")


@pytest.mark.parametrize(
    ("validity_s", "expected"),
    [
        (None, None),
        (90, "90"),
        (1, "1"),
        (0, "1"),
        (-60, "1"),
        (MAX_VALIDITY_S, str(MAX_VALIDITY_S)),
        (MAX_VALIDITY_S + 1, str(MAX_VALIDITY_S)),
        (30 * 24 * 3600, str(MAX_VALIDITY_S)),
    ],
    ids=[
        "no-deadline",
        "in-range",
        "one-second",
        "now",
        "past",
        "at-max",
        "over-max",
        "far-future",
    ],
)
async def test_the_validity_period_sent_is_clamped_to_what_twilio_allows(
    validity_s: int | None, expected: str | None
) -> None:
    assert await sent_validity_period(validity_s) == expected


async def test_the_validity_period_sent_never_exceeds_twilios_documented_maximum() -> None:
    validity = await sent_validity_period(40 * 3600)

    assert validity is not None
    assert int(validity) <= TWILIO_MAX_VALIDITY_PERIOD_S
