"""The Bandwidth adapter, checked against Bandwidth's official Python SDK (bandwidth-sdk).

The SDK is the reference for the send request: ours must be the one
``MessagesApi.create_message`` puts on the wire. Its ``StatusCallback`` model
is the reference for receipts: every callback fixture here must parse with it.
Bandwidth authenticates callbacks with HTTP Basic credentials rather than a
signature, and no SDK ships a validator; ours must accept the Authorization
header the SDK's own Basic encoder builds, and refuse every other.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import urllib3
from bandwidth import ApiClient, Configuration
from bandwidth.api.messages_api import MessagesApi
from bandwidth.models.message_request import MessageRequest
from bandwidth.models.status_callback import StatusCallback
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from worker.errors import (
    InvalidWebhook,
    ProviderError,
    ProviderTimeout,
    ProviderUncertain,
    ProviderUnreachable,
)
from worker.models import Category, Status
from worker.providers.bandwidth import (
    ERROR_CATEGORIES,
    BandwidthProvider,
    basic_credentials_match,
    classify,
    expiration,
)
from worker.providers.base import OutboundText, SendResult, WebhookRequest

ACCOUNT_ID = "9900000"
APPLICATION_ID = "93de2206-9669-4e07-948d-329f4b722ee2"
USERNAME = "api-user"
PASSWORD = "correct-horse-battery-staple"
CALLBACK_USERNAME = "sendq-callbacks"
CALLBACK_PASSWORD = "xxv3jPsPR2-secret"
API = "https://messaging.bandwidth.com"
JSON = "application/json"
NOW = datetime(2024, 11, 28, 17, 46, 0, 250_000, tzinfo=UTC)
CALLBACK = "https://hooks.example.com/webhooks/bandwidth/status?mid=msg-0001"

MESSAGE_ID = "14762070468292kw2fuqty55yp2b2"
CREATED_MESSAGE = {
    "id": MESSAGE_ID,
    "owner": "+15557654321",
    "applicationId": APPLICATION_ID,
    "time": "2024-11-28T17:46:00.179Z",
    "segmentCount": 1,
    "direction": "out",
    "to": ["+15551234567"],
    "from": "+15557654321",
    "text": "Hello",
    "tag": "msg-0001",
    "priority": "default",
}

Handler = Callable[[httpx.Request], httpx.Response]


# -- helpers -----------------------------------------------------------------


class RecordingPoolManager:
    """Stands in for the SDK's urllib3 pool: records each request, answers 202 Accepted."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = json.dumps(answer).encode()
        self.requests: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        self.requests.append({"method": method, "url": url, **kwargs})
        return urllib3.HTTPResponse(
            body=self.answer, status=202, headers={"Content-Type": JSON}, preload_content=False
        )


def provider_answering(
    handler: Handler, clock: Callable[[], datetime] = lambda: NOW
) -> BandwidthProvider:
    client = httpx.AsyncClient(
        base_url=API, auth=(USERNAME, PASSWORD), transport=httpx.MockTransport(handler)
    )
    return BandwidthProvider(
        account_id=ACCOUNT_ID,
        application_id=APPLICATION_ID,
        username=USERNAME,
        password=PASSWORD,
        client=client,
        clock=clock,
    )


def offline_provider(
    callback_username: str | None = CALLBACK_USERNAME,
    callback_password: str | None = CALLBACK_PASSWORD,
) -> BandwidthProvider:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("this test must not send anything")

    client = httpx.AsyncClient(base_url=API, transport=httpx.MockTransport(unreachable))
    return BandwidthProvider(
        account_id=ACCOUNT_ID,
        application_id=APPLICATION_ID,
        username=USERNAME,
        password=PASSWORD,
        callback_username=callback_username,
        callback_password=callback_password,
        client=client,
    )


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
    status: int, payload: object = None, headers: dict[str, str] | None = None, body: str = ""
) -> SendResult:
    def answer(request: httpx.Request) -> httpx.Response:
        if payload is None:
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=payload, headers=headers)

    provider = provider_answering(answer)
    try:
        result: SendResult = await provider.send(text())
    finally:
        await provider.aclose()
    return result


def basic_credentials(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    return user, password


# -- 1. request-shape parity ---------------------------------------------------


def sdk_request(message: OutboundText, expires: datetime | None) -> dict[str, Any]:
    recorder = RecordingPoolManager(CREATED_MESSAGE)
    api_client = ApiClient(Configuration(username=USERNAME, password=PASSWORD))
    api_client.rest_client.pool_manager = recorder
    request = MessageRequest(
        application_id=APPLICATION_ID,
        to=[message.to],
        var_from=message.sender,
        text=message.body,
        tag=message.message_id,
        expiration=expires,
    )
    created = MessagesApi(api_client).create_message(ACCOUNT_ID, request)
    assert created.id == MESSAGE_ID
    [recorded] = recorder.requests
    return recorded


async def our_request(message: OutboundText) -> httpx.Request:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(202, json=CREATED_MESSAGE)

    provider = provider_answering(handler)
    try:
        result = await provider.send(message)
    finally:
        await provider.aclose()
    assert result.category is Category.OK
    [request] = captured
    return request


SDK_FIELDS = {"applicationId", "to", "from", "text", "tag"}
PARITY_CASES = [
    pytest.param(text(), NOW.replace(microsecond=0) + timedelta(hours=1), id="validity"),
    pytest.param(text(validity_s=None), None, id="no-validity"),
]


@pytest.mark.parametrize(("message", "expires"), PARITY_CASES)
async def test_send_posts_the_same_json_as_the_official_sdk(
    message: OutboundText, expires: datetime | None
) -> None:
    theirs = sdk_request(message, expires)
    ours = await our_request(message)

    assert ours.method == theirs["method"] == "POST"
    assert str(ours.url) == theirs["url"]
    assert ours.url.path == f"/api/v2/users/{ACCOUNT_ID}/messages"
    assert not ours.url.query
    our_auth = basic_credentials(ours.headers["authorization"])
    assert our_auth == basic_credentials(theirs["headers"]["Authorization"])
    assert our_auth == (USERNAME, PASSWORD)

    our_fields = json.loads(ours.content)
    sdk_fields = json.loads(theirs["body"])
    assert our_fields == sdk_fields
    expected_names = SDK_FIELDS | ({"expiration"} if expires else set())
    assert set(our_fields) == expected_names
    assert our_fields["text"] == message.body
    assert our_fields["to"] == [message.to]


async def test_send_is_json_and_asks_for_json_like_the_sdk() -> None:
    theirs = sdk_request(text(), None)
    ours = await our_request(text())

    assert theirs["headers"]["Content-Type"] == JSON
    assert ours.headers["content-type"] == JSON
    assert theirs["headers"]["Accept"] == ours.headers["accept"] == JSON


async def test_the_sdk_model_accepts_the_body_we_send() -> None:
    ours = json.loads((await our_request(text())).content)

    parsed = MessageRequest.from_dict(ours)

    assert parsed is not None
    assert parsed.additional_properties == {}  # no field the SDK does not know
    assert parsed.to_dict() == {**ours, "expiration": parsed.expiration}
    assert parsed.expiration == NOW.replace(microsecond=0) + timedelta(seconds=3600)


async def test_the_tag_carries_our_message_id_for_the_callback() -> None:
    ours = json.loads((await our_request(text(message_id="msg-42"))).content)

    assert ours["tag"] == "msg-42"
    # Bandwidth has no per-message callback URL; it must not leak into the body.
    assert CALLBACK not in json.dumps(ours)


async def test_the_expiration_follows_the_injected_clock() -> None:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(202, json=CREATED_MESSAGE)

    later = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    provider = provider_answering(handler, clock=lambda: later)
    try:
        await provider.send(text(validity_s=90))
    finally:
        await provider.aclose()

    assert json.loads(captured[0].content)["expiration"] == "2030-01-02T03:05:35+00:00"


# -- 2. response parsing ---------------------------------------------------------


async def test_an_accepted_message_is_ok_with_its_id() -> None:
    result = await send_answered_by(202, CREATED_MESSAGE)

    assert result.ok
    assert result.provider_message_id == MESSAGE_ID
    assert result.error_code is None


async def test_an_accepted_message_without_an_id_is_still_ok() -> None:
    result = await send_answered_by(202, {"owner": "+15557654321"})

    assert result.ok
    assert result.provider_message_id is None


async def test_429_is_throttled_and_honours_retry_after() -> None:
    # Bandwidth's documented answer when the account's queue is full.
    queue_full = {
        "type": "max-message-queue-size-exceeded",
        "description": "The SMS queue for your account is full and cannot accept more messages.",
    }
    result = await send_answered_by(429, queue_full, headers={"Retry-After": "3"})

    assert result.category is Category.THROTTLED
    assert result.retry_after_s == 3
    assert result.error_code == "max-message-queue-size-exceeded"
    assert result.error == queue_full["description"]


async def test_429_without_a_bandwidth_body_is_still_throttled() -> None:
    result = await send_answered_by(429, body="slow down", headers={"Retry-After": "1.5"})

    assert result.category is Category.THROTTLED
    assert result.retry_after_s == 1.5
    assert result.error_code == "http_429"


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateways_502_or_504_leaves_it_uncertain_whether_the_text_went(status: int) -> None:
    # A gateway answered, not bandwidth: the provider behind it may have taken the text.
    with pytest.raises(ProviderUncertain):
        await send_answered_by(status, {"type": "internal", "description": "oops"})


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_transient(status: int) -> None:
    result = await send_answered_by(status, {"type": "internal", "description": "oops"})

    assert result.category is Category.TRANSIENT


async def test_a_server_error_with_an_html_body_is_transient() -> None:
    result = await send_answered_by(503, body="<html>oops</html>")

    assert result.category is Category.TRANSIENT
    assert result.error_code == "http_503"
    assert result.error == "Service Unavailable"


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (401, {"type": "unauthorized", "description": "Authentication Failed"}),
        (403, {"type": "forbidden", "description": "Access Denied"}),
        (401, None),
    ],
    ids=["documented-401", "documented-403", "bare-401"],
)
async def test_an_authentication_failure_is_transient(
    status: int, payload: dict[str, str] | None
) -> None:
    result = await send_answered_by(status, payload)

    assert result.category is Category.TRANSIENT


@pytest.mark.parametrize(
    ("status", "payload", "code"),
    [
        (
            400,
            {"type": "request-validation", "description": "Your request could not be accepted"},
            "request-validation",
        ),
        (404, {"timestamp": "2019-09-09T19:02:19.253+0000", "status": 404}, "http_404"),
        (
            415,
            {"type": "unsupported-content-type", "description": "Content type"},
            "unsupported-content-type",
        ),
    ],
    ids=["400", "404", "415"],
)
async def test_an_unknown_4xx_is_permanent(status: int, payload: dict[str, Any], code: str) -> None:
    result = await send_answered_by(status, payload)

    assert result.category is Category.PERMANENT
    assert result.error_code == code


async def test_a_validation_error_names_the_fields_bandwidth_refused() -> None:
    payload = {
        "type": "request-validation",
        "description": "Your request could not be accepted",
        "fieldErrors": [{"fieldName": "from", "description": "'+1555' is not a valid number"}],
    }
    result = await send_answered_by(400, payload)

    assert result.category is Category.PERMANENT
    assert result.error == (
        "Your request could not be accepted (from: '+1555' is not a valid number)"
    )


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
    assert caught.value.provider == "bandwidth"


# -- 4. callback authentication (HTTP Basic) -------------------------------------------


def sdk_authorization(username: str = CALLBACK_USERNAME, password: str = CALLBACK_PASSWORD) -> str:
    """The Authorization header the Bandwidth SDK's own Basic encoder builds."""
    header = Configuration(username=username, password=password).get_basic_auth_token()
    assert header is not None
    return str(header)


def httpx_authorization(username: str, password: str) -> str:
    request = httpx.Request("POST", "https://hooks.example.com/")
    return str(
        next(httpx.BasicAuth(username, password).auth_flow(request)).headers["authorization"]
    )


def authed(authorization: str | None, body: bytes = b"[]", url: str = CALLBACK) -> WebhookRequest:
    headers = httpx.Headers()
    if authorization is not None:
        headers["Authorization"] = authorization
    return WebhookRequest(url=url, headers=headers, body=body, content_type=JSON)


def test_verify_accepts_the_header_the_sdk_builds() -> None:
    assert offline_provider().verify_signature(authed(sdk_authorization()))


def test_verify_accepts_the_header_httpx_builds() -> None:
    header = httpx_authorization(CALLBACK_USERNAME, CALLBACK_PASSWORD)

    assert offline_provider().verify_signature(authed(header))


def test_verify_accepts_a_lowercase_scheme() -> None:
    header = sdk_authorization().replace("Basic ", "basic ", 1)

    assert offline_provider().verify_signature(authed(header))


def test_verify_reads_a_plain_dict_with_a_capitalised_header() -> None:
    request = WebhookRequest(
        url=CALLBACK, headers={"Authorization": sdk_authorization()}, body=b"[]", content_type=JSON
    )

    assert offline_provider().verify_signature(request)


@pytest.mark.parametrize(
    ("username", "password"),
    [("zoë", "pässwörd"), ("user", "naïve:colon")],
    ids=["latin-1", "colon-in-password"],
)
def test_verify_accepts_non_ascii_credentials_in_either_encoding(
    username: str, password: str
) -> None:
    provider = offline_provider(username, password)

    assert provider.verify_signature(authed(sdk_authorization(username, password)))  # latin-1
    assert provider.verify_signature(authed(httpx_authorization(username, password)))  # UTF-8


def test_verify_refuses_a_request_without_authorization() -> None:
    assert not offline_provider().verify_signature(authed(None))


def test_verify_refuses_an_empty_authorization() -> None:
    assert not offline_provider().verify_signature(authed(""))


def test_verify_refuses_a_wrong_password() -> None:
    header = sdk_authorization(password="another-password")

    assert not offline_provider().verify_signature(authed(header))


def test_verify_refuses_a_wrong_username() -> None:
    header = sdk_authorization(username="someone-else")

    assert not offline_provider().verify_signature(authed(header))


def test_verify_refuses_swapped_credentials() -> None:
    header = sdk_authorization(CALLBACK_PASSWORD, CALLBACK_USERNAME)

    assert not offline_provider().verify_signature(authed(header))


@pytest.mark.parametrize(
    "password",
    [CALLBACK_PASSWORD[:-1], CALLBACK_PASSWORD + "x", CALLBACK_PASSWORD.upper(), ""],
    ids=["truncated", "extended", "case-changed", "empty"],
)
def test_verify_refuses_a_near_miss_password(password: str) -> None:
    header = sdk_authorization(password=password)

    assert not offline_provider().verify_signature(authed(header))


def test_verify_refuses_the_api_credentials_instead_of_the_callback_ones() -> None:
    assert not offline_provider().verify_signature(authed(sdk_authorization(USERNAME, PASSWORD)))


def test_verify_refuses_another_scheme_with_the_right_token() -> None:
    token = sdk_authorization().partition(" ")[2]

    assert not offline_provider().verify_signature(authed(f"Bearer {token}"))


@pytest.mark.parametrize(
    "garbage",
    [
        "Basic",
        "Basic ",
        "Basic not base64 at all!",
        "Basic " + sdk_authorization().partition(" ")[2][:-2],  # padding cut off
        "Basic " + sdk_authorization().partition(" ")[2] + "AAAA",  # trailing bytes
        "Basic " + base64.b64encode(CALLBACK_USERNAME.encode()).decode(),  # no colon
        "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),  # not text
        "=",
        sdk_authorization().partition(" ")[2],  # token without scheme
    ],
    ids=[
        "scheme-only",
        "scheme-space",
        "not-base64",
        "bad-padding",
        "trailing-bytes",
        "username-only",
        "binary",
        "equals",
        "no-scheme",
    ],
)
def test_verify_refuses_a_garbage_authorization(garbage: str) -> None:
    assert not offline_provider().verify_signature(authed(garbage))


@pytest.mark.parametrize("garbage", ["Basic ñññ", "Bäsic " + "é" * 24], ids=["token", "scheme"])
def test_verify_refuses_a_non_ascii_authorization(garbage: str) -> None:
    request = WebhookRequest(
        url=CALLBACK, headers={"authorization": garbage}, body=b"[]", content_type=JSON
    )

    assert not offline_provider().verify_signature(request)


@pytest.mark.parametrize(
    ("username", "password"),
    [(None, None), (CALLBACK_USERNAME, None), (None, CALLBACK_PASSWORD), ("", ""), ("", "x")],
    ids=["none", "no-password", "no-username", "empty", "empty-username"],
)
def test_verify_refuses_everything_when_callback_credentials_are_not_configured(
    username: str | None, password: str | None
) -> None:
    provider = offline_provider(username, password)

    assert not provider.verify_signature(authed(sdk_authorization(username or "", password or "")))
    assert not provider.verify_signature(authed(sdk_authorization()))
    assert not provider.verify_signature(authed(None))


def test_basic_auth_does_not_bind_the_url_or_the_body() -> None:
    # A known limit of Bandwidth's scheme, stated here so nobody relies on more:
    # the credentials prove who sent the callback, HTTPS keeps it intact.
    request = authed(sdk_authorization(), body=b'[{"type": "message-failed"}]', url="https://x/")

    assert offline_provider().verify_signature(request)


credential = st.text(
    alphabet=st.characters(codec="latin-1", exclude_characters=":"), min_size=1, max_size=30
)


@settings(max_examples=300, deadline=None)
@given(username=credential, password=st.text(st.characters(codec="latin-1"), min_size=1))
def test_verify_accepts_any_credentials_the_sdk_encodes(username: str, password: str) -> None:
    provider = offline_provider(username, password)

    assert provider.verify_signature(authed(sdk_authorization(username, password)))
    assert provider.verify_signature(authed(httpx_authorization(username, password)))


def encodings(text: str) -> set[bytes]:
    forms = {text.encode()}
    if all(ord(c) < 256 for c in text):
        forms.add(text.encode("latin-1"))
    return forms


@settings(max_examples=300, deadline=None)
@given(password=st.text(min_size=1, max_size=40), other=st.text(min_size=1, max_size=40))
def test_verify_refuses_any_other_password(password: str, other: str) -> None:
    # Distinct strings can share bytes across UTF-8 and latin-1 ("é" / "Ã©"); those match.
    assume(f"u:{other}".encode() not in encodings(f"u:{password}"))

    assert not basic_credentials_match(httpx_authorization("u", other), "u", password)


@settings(max_examples=500, deadline=None)
@given(header=st.text(max_size=80))
def test_verify_never_raises_and_refuses_any_other_header(header: str) -> None:
    assume(header.strip().lower() != sdk_authorization().lower())
    request = WebhookRequest(
        url=CALLBACK, headers={"authorization": header}, body=b"", content_type=JSON
    )

    assert offline_provider().verify_signature(request) is False


# -- 5. receipts ----------------------------------------------------------------------


def event(kind: str = "message-delivered", **overrides: Any) -> dict[str, Any]:
    """A status callback event shaped like Bandwidth's documented examples."""
    message = {
        "id": MESSAGE_ID,
        "owner": "+15557654321",
        "applicationId": APPLICATION_ID,
        "time": "2024-11-28T17:46:00.179Z",
        "segmentCount": 1,
        "direction": "out",
        "to": ["+15551234567"],
        "from": "+15557654321",
        "text": "",
        "tag": "msg-0001",
    }
    message.update(overrides.pop("message", {}))
    fields: dict[str, Any] = {
        "type": kind,
        "time": "2024-11-28T17:46:02Z",
        "description": "ok",
        "to": "+15551234567",
        "message": message,
    }
    fields.update(overrides)
    return fields


def failed(code: object, **overrides: Any) -> dict[str, Any]:
    fields = event("message-failed", description="rejected", **overrides)
    if code is not None:
        fields["errorCode"] = code
    return fields


def callback(*events: object, content_type: str = JSON) -> WebhookRequest:
    body = json.dumps(list(events)).encode()
    return WebhookRequest(url=CALLBACK, headers={}, body=body, content_type=content_type)


def raw_callback(body: bytes, content_type: str = JSON) -> WebhookRequest:
    return WebhookRequest(url=CALLBACK, headers={}, body=body, content_type=content_type)


@pytest.mark.parametrize(
    "fixture",
    [
        event(),
        event("message-sending"),
        event("message-sent"),
        event("message-read", eventTime="2024-11-28T17:47:00Z"),
        failed(4770),
        event(carrierName="T-Mobile USA, Inc."),
    ],
    ids=["delivered", "sending", "sent", "read", "failed", "carrier"],
)
def test_our_fixtures_parse_with_the_sdks_status_callback_model(fixture: dict[str, Any]) -> None:
    parsed = StatusCallback.from_dict(fixture)

    assert parsed is not None
    assert parsed.additional_properties == {}
    assert parsed.message.tag == "msg-0001"


def test_a_delivered_receipt_is_ok_and_names_our_message_from_the_tag() -> None:
    parsed = offline_provider().parse_receipt(callback(event()))

    assert parsed.provider_message_id == MESSAGE_ID
    assert parsed.message_id == "msg-0001"
    assert parsed.status == Status.DELIVERED
    assert parsed.category is Category.OK
    assert parsed.error_code is None


@pytest.mark.parametrize(("code", "category"), sorted(ERROR_CATEGORIES.items()))
def test_each_known_bandwidth_error_code_has_its_category(code: str, category: Category) -> None:
    parsed = offline_provider().parse_receipt(callback(failed(int(code))))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code == code
    assert parsed.category is category
    assert classify(code, 400) is category


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("5123", Category.TRANSIENT),
        ("9123", Category.AMBIGUOUS),
        ("4432", Category.PERMANENT),  # rejected-forbidden-country
        ("4403", Category.PERMANENT),  # rejected-forbidden-from-number
        ("4360", Category.PERMANENT),  # expiration passed: no retry can help
    ],
    ids=["undocumented-5xxx", "undocumented-9xxx", "4432", "4403", "4360"],
)
def test_codes_outside_the_table_follow_bandwidths_code_schema(
    code: str, category: Category
) -> None:
    assert code not in ERROR_CATEGORIES

    parsed = offline_provider().parse_receipt(callback(failed(int(code))))

    assert parsed.category is category


def test_a_failed_receipt_with_a_string_error_code_is_classified() -> None:
    parsed = offline_provider().parse_receipt(callback(failed("4775")))

    assert parsed.error_code == "4775"
    assert parsed.category is Category.OPTED_OUT


@pytest.mark.parametrize("code", [None, "", True, {"x": 1}], ids=["none", "empty", "bool", "obj"])
def test_a_failed_receipt_without_a_usable_code_is_permanent(code: object) -> None:
    parsed = offline_provider().parse_receipt(callback(failed(code)))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code is None
    assert parsed.category is Category.PERMANENT


def test_a_sent_event_is_sent() -> None:
    parsed = offline_provider().parse_receipt(callback(event("message-sent")))

    assert parsed.status == Status.SENT
    assert parsed.category is Category.OK


@pytest.mark.parametrize("progress", ["message-sending", "message-read"])
def test_an_intermediate_event_reports_progress_only(progress: str) -> None:
    parsed = offline_provider().parse_receipt(callback(event(progress)))

    assert parsed.provider_message_id == MESSAGE_ID
    assert parsed.status == progress
    assert parsed.category is Category.OK
    assert parsed.error_code is None


def test_a_receipt_carries_the_carrier_name_when_bandwidth_sends_it() -> None:
    parsed = offline_provider().parse_receipt(callback(failed(4770, carrierName="AT&T")))

    assert parsed.carrier == "AT&T"
    assert parsed.category is Category.CARRIER_BLOCK


@pytest.mark.parametrize("tag", [None, ""], ids=["absent", "empty"])
def test_a_receipt_without_a_tag_has_no_message_id(tag: str | None) -> None:
    fixture = event()
    if tag is None:
        del fixture["message"]["tag"]
    else:
        fixture["message"]["tag"] = tag

    assert offline_provider().parse_receipt(callback(fixture)).message_id is None


def test_a_batch_yields_every_status_event_and_parse_receipt_the_first() -> None:
    request = callback(
        event("message-sending"),
        failed(4470, message={"id": "other-id", "tag": "msg-2"}),
    )
    provider = offline_provider()

    receipts = provider.parse_receipts(request)

    assert [(r.provider_message_id, r.status) for r in receipts] == [
        (MESSAGE_ID, "message-sending"),
        ("other-id", Status.UNDELIVERED),
    ]
    assert receipts[1].category is Category.CARRIER_BLOCK
    assert receipts[1].message_id == "msg-2"
    assert provider.parse_receipt(request) == receipts[0]


def test_inbound_texts_in_a_batch_are_skipped() -> None:
    inbound = event("message-received", message={"direction": "in", "text": "STOP"})

    parsed = offline_provider().parse_receipt(callback(inbound, event()))

    assert parsed.status == Status.DELIVERED


def test_a_callback_holding_only_inbound_texts_is_not_a_receipt() -> None:
    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(callback(event("message-received")))


def test_a_lone_event_object_is_tolerated() -> None:
    request = raw_callback(json.dumps(event()).encode())

    assert offline_provider().parse_receipt(request).status == Status.DELIVERED


def test_a_json_receipt_with_a_charset_is_accepted() -> None:
    request = callback(event(), content_type="application/json; charset=utf-8")

    assert offline_provider().parse_receipt(request).status == Status.DELIVERED


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", ""])
def test_a_receipt_that_is_not_json_typed_is_invalid(content_type: str) -> None:
    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(callback(event(), content_type=content_type))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[{]",
        b'[{"type": "message-delivered", "message": {"id": "\xff"}}]',
        b"null",
        b"42",
        b'"message-delivered"',
        b"[]",
        b"[1, 2]",
        b'[{"type": "message-delivered"}, "x"]',
    ],
    ids=[
        "empty",
        "text",
        "broken",
        "not-utf8",
        "null",
        "number",
        "string",
        "empty-array",
        "array-of-numbers",
        "mixed-array",
    ],
)
def test_a_garbage_body_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(raw_callback(body))


@pytest.mark.parametrize(
    "fixture",
    [
        {k: v for k, v in event().items() if k != "type"},
        event(type=""),
        event(type=7),
        {k: v for k, v in event().items() if k != "message"},
        event() | {"message": None},
        event() | {"message": [MESSAGE_ID]},
        event(message={"id": ""}),
        event(message={"id": 12345}),
        event() | {"message": {"tag": "msg-0001"}},
    ],
    ids=[
        "no-type",
        "empty-type",
        "numeric-type",
        "no-message",
        "null-message",
        "list-message",
        "empty-id",
        "numeric-id",
        "no-id",
    ],
)
def test_an_event_missing_what_a_receipt_needs_is_invalid(fixture: dict[str, Any]) -> None:
    with pytest.raises(InvalidWebhook):
        offline_provider().parse_receipt(callback(fixture))


# -- 6. expiration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("validity_s", "expected"),
    [
        (None, None),
        (3600, "2024-11-28T18:46:00+00:00"),
        (1, "2024-11-28T17:46:01+00:00"),
        (0, "2024-11-28T17:46:01+00:00"),
        (-60, "2024-11-28T17:46:01+00:00"),
        (7 * 24 * 3600, "2024-12-05T17:46:00+00:00"),
    ],
    ids=["none", "hour", "one-second", "zero", "negative", "week"],
)
def test_expiration_is_rfc3339_and_always_in_the_future(
    validity_s: int | None, expected: str | None
) -> None:
    assert expiration(NOW, validity_s) == expected


def test_expiration_is_utc_whatever_the_clocks_zone() -> None:
    from datetime import timezone

    eastern = NOW.astimezone(timezone(timedelta(hours=-5)))

    assert expiration(eastern, 60) == "2024-11-28T17:47:00+00:00"


@settings(max_examples=200, deadline=None)
@given(validity_s=st.integers(min_value=-(10**6), max_value=10**7))
def test_expiration_parses_as_a_future_time(validity_s: int) -> None:
    expires = expiration(NOW, validity_s)

    assert expires is not None
    assert datetime.fromisoformat(expires) > NOW
