"""The Vonage adapter, checked against Vonage's official Python SDK.

The SDK is the reference: the request our adapter sends must be the one
``vonage_sms.Sms.send`` puts on the wire, and our webhook signatures must be the
ones ``vonage_http_client.auth.Auth`` computes (``sign_params``) and accepts
(``check_signature``). That SDK cannot compute Vonage's default "MD5 hash"
method (it only knows HMACs), so that one is checked against the vector in the
older vonage-python-sdk's own tests (``test_signature``: a=1, b=2,
timestamp=1461605396, secret "secret").
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import requests
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter
from vonage_http_client.auth import Auth
from vonage_http_client.http_client import HttpClient
from vonage_sms import Sms, SmsMessage

from worker.errors import (
    InvalidWebhook,
    ProviderError,
    ProviderTimeout,
    ProviderUncertain,
    ProviderUnreachable,
)
from worker.models import Category, Status
from worker.providers import vonage
from worker.providers.base import OutboundText, SendResult, WebhookRequest
from worker.providers.vonage import (
    ERROR_CATEGORIES,
    MAX_TTL_MS,
    MIN_TTL_MS,
    VonageProvider,
    signature,
    ttl_ms,
)

API_KEY = "abcd1234"
API_SECRET = "abcdef0123456789"
SIGNATURE_SECRET = "Zx8sigSecret0123456789abcdefGHIJ"
API = "https://rest.nexmo.com"
FORM = "application/x-www-form-urlencoded"
CALLBACK = "https://hooks.example.com/webhooks/vonage/status?mid=msg-0001"
NOW = 1_700_000_000
MESSAGE_ID = "0A0000000123ABCD1"
# Our method names -> vonage_http_client's (it has no "MD5 hash").
SDK_METHODS = {"md5hmac": "md5", "sha1hmac": "sha1", "sha256hmac": "sha256", "sha512hmac": "sha512"}

Handler = Callable[[httpx.Request], httpx.Response]


def accepted(*message_ids: str) -> dict[str, Any]:
    """The SMS API's answer when every part was accepted."""
    ids = message_ids or (MESSAGE_ID,)
    return {
        "message-count": str(len(ids)),
        "messages": [
            {
                "to": "15551234567",
                "message-id": message_id,
                "status": "0",
                "remaining-balance": "15.53590000",
                "message-price": "0.03330000",
                "network": "310260",
                "client-ref": "msg-0001",
            }
            for message_id in ids
        ],
    }


def refused(status: str, error_text: str = "Something went wrong") -> dict[str, Any]:
    return {"message-count": "1", "messages": [{"status": status, "error-text": error_text}]}


# -- helpers -------------------------------------------------------------------------


class RecordingAdapter(BaseAdapter):
    """A requests transport adapter: records what the SDK puts on the wire."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__()
        self.answer = json.dumps(answer).encode()
        self.requests: list[requests.PreparedRequest] = []

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        self.requests.append(request)
        response = requests.Response()
        response.status_code = 200
        response._content = self.answer
        response.headers["Content-Type"] = "application/json"
        response.request = request
        response.url = str(request.url)
        return response

    def close(self) -> None:
        return None


def sdk_wire_request(auth: Auth, **message: Any) -> requests.PreparedRequest:
    http_client = HttpClient(auth)
    adapter = RecordingAdapter(accepted())
    http_client._session.mount("https://", adapter)
    sent = Sms(http_client).send(SmsMessage(**message))
    assert sent.messages[0].message_id == MESSAGE_ID
    [request] = adapter.requests
    return request


def provider(
    handler: Handler | None = None,
    *,
    auth: tuple[str, str] | None = (API_KEY, API_SECRET),
    **options: Any,
) -> VonageProvider:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("this test must not send anything")

    client = httpx.AsyncClient(
        base_url=API, auth=auth, transport=httpx.MockTransport(handler or unreachable)
    )
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "signature_secret": SIGNATURE_SECRET,
        "clock": lambda: float(NOW),
        **options,
    }
    return VonageProvider(client=client, **settings)


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


async def our_request(message: OutboundText, **options: Any) -> httpx.Request:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json=accepted())

    ours = provider(handler, **options)
    try:
        result = await ours.send(message)
    finally:
        await ours.aclose()
    assert result.category is Category.OK
    [request] = captured
    return request


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


def form_fields(body: bytes | str) -> list[tuple[str, str]]:
    raw = body.decode("ascii") if isinstance(body, bytes) else body
    return parse_qsl(raw, keep_blank_values=True, strict_parsing=True)


# -- 1. request-shape parity -------------------------------------------------------------

GSM_BODY = "Hello @ £5 & 10% = ok? {yes}"
UNICODE_BODY = text().body
LONG_CALLBACK = "https://hooks.example.com/" + "x" * 80 + "/webhooks/vonage/status?mid=msg-0001"

PARITY_CASES = [
    pytest.param(
        text(body=UNICODE_BODY),
        {
            "to": "15551234567",
            "from_": "15557654321",
            "text": UNICODE_BODY,
            "type": "unicode",
            "ttl": 3_600_000,
            "callback": CALLBACK,
            "client_ref": "msg-0001",
        },
        id="unicode",
    ),
    pytest.param(
        text(body=GSM_BODY, validity_s=None),
        {
            "to": "15551234567",
            "from_": "15557654321",
            "text": GSM_BODY,
            "type": "text",
            "callback": CALLBACK,
            "client_ref": "msg-0001",
        },
        id="gsm7-no-validity",
    ),
    pytest.param(
        text(body=GSM_BODY, sender="AcmeInc", status_callback_url=LONG_CALLBACK, validity_s=5),
        {
            "to": "15551234567",
            "from_": "AcmeInc",
            "text": GSM_BODY,
            "type": "text",
            "ttl": MIN_TTL_MS,
            "client_ref": "msg-0001",
        },
        id="alphanumeric-sender-long-callback-short-validity",
    ),
]


@pytest.mark.parametrize(("message", "sdk_message"), PARITY_CASES)
async def test_send_posts_the_same_form_as_the_official_sdk(
    message: OutboundText, sdk_message: dict[str, Any]
) -> None:
    theirs = sdk_wire_request(Auth(api_key=API_KEY, api_secret=API_SECRET), **sdk_message)
    ours = await our_request(message)

    assert ours.method == theirs.method == "POST"
    assert str(ours.url) == theirs.url == f"{API}/sms/json"
    assert ours.headers["authorization"] == theirs.headers["Authorization"]
    assert ours.headers["content-type"] == theirs.headers["Content-Type"] == FORM
    assert ours.headers["accept"] == theirs.headers["Accept"] == "application/json"

    our_fields = form_fields(ours.content)
    sdk_fields = form_fields(str(theirs.body))
    assert dict(our_fields) == dict(sdk_fields)
    assert sorted(our_fields) == sorted(sdk_fields)  # and no name sent twice on either side
    assert {name for name, _ in our_fields} == {
        "client-ref" if key == "client_ref" else key.rstrip("_") for key in sdk_message
    }
    assert dict(our_fields)["text"] == message.body


async def test_basic_auth_carries_the_api_key_and_secret() -> None:
    ours = await our_request(text())

    scheme, _, token = ours.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token).decode() == f"{API_KEY}:{API_SECRET}"
    assert "api_secret" not in dict(form_fields(ours.content))


@pytest.mark.parametrize("method", sorted(SDK_METHODS))
async def test_a_signed_send_posts_the_sdks_fields_and_a_signature_it_accepts(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vonage_http_client.auth.time", lambda: NOW)
    sdk_auth = Auth(
        api_key=API_KEY, signature_secret=SIGNATURE_SECRET, signature_method=SDK_METHODS[method]
    )
    theirs = sdk_wire_request(
        sdk_auth,
        to="15551234567",
        from_="15557654321",
        text=GSM_BODY,
        type="text",
        ttl=3_600_000,
        callback=CALLBACK,
        client_ref="msg-0001",
    )
    ours = await our_request(
        text(body=GSM_BODY),
        auth=None,
        api_secret=None,
        sign_requests=True,
        signature_method=method,
    )

    our_fields = dict(form_fields(ours.content))
    sdk_fields = dict(form_fields(str(theirs.body)))
    assert "authorization" not in ours.headers
    assert "Authorization" not in theirs.headers
    assert our_fields.keys() == sdk_fields.keys()
    assert {k: v for k, v in our_fields.items() if k != "sig"} == {
        k: v for k, v in sdk_fields.items() if k != "sig"
    }
    assert our_fields["timestamp"] == str(NOW)
    assert "api_secret" not in our_fields
    # vonage-sms signs its unset fields too ("&account-ref=None"...), which it does
    # not send; ours signs what is sent, as Vonage's check needs.
    unsigned = {k: v for k, v in our_fields.items() if k != "sig"}
    assert our_fields["sig"] == sdk_auth.sign_params(dict(unsigned))
    assert sdk_auth.check_signature(dict(our_fields))


async def test_a_signed_send_with_md5_hash_matches_vonages_published_algorithm() -> None:
    ours = await our_request(text(), auth=None, sign_requests=True, signature_method="md5hash")

    fields = dict(form_fields(ours.content))
    sig = fields.pop("sig")
    assert sig == signature(fields, SIGNATURE_SECRET, "md5hash")
    assert "authorization" not in ours.headers


async def test_send_leaves_out_a_client_ref_longer_than_vonage_takes() -> None:
    ours = await our_request(text(message_id="m" * 41, status_callback_url=CALLBACK))

    fields = dict(form_fields(ours.content))
    assert "client-ref" not in fields
    assert fields["callback"] == CALLBACK


@pytest.mark.parametrize(
    ("validity_s", "expected"),
    [
        (None, None),
        (0, MIN_TTL_MS),
        (19, MIN_TTL_MS),
        (20, 20_000),
        (3600, 3_600_000),
        (604_800, MAX_TTL_MS),
        (10**9, MAX_TTL_MS),
    ],
)
def test_ttl_is_the_validity_in_ms_within_vonages_range(
    validity_s: int | None, expected: int | None
) -> None:
    assert ttl_ms(validity_s) == expected
    if expected is not None:  # the SDK's own range check agrees
        SmsMessage(to="1", from_="x", text="t", ttl=expected)


# -- 2. response parsing ------------------------------------------------------------------


async def test_an_accepted_text_is_ok_with_its_message_id() -> None:
    result = await send_answered_by(200, accepted())

    assert result.ok
    assert result.provider_message_id == MESSAGE_ID
    assert result.error_code is None


async def test_a_long_text_is_ok_with_its_first_parts_id() -> None:
    result = await send_answered_by(200, accepted("PART-1", "PART-2", "PART-3"))

    assert result.ok
    assert result.provider_message_id == "PART-1"


async def test_a_text_refused_in_part_fails_rather_than_resending_the_sent_parts() -> None:
    payload = accepted("PART-1", "PART-2")
    payload["messages"][1] = {"status": "1", "error-text": "Throughput Rate Exceeded"}

    result = await send_answered_by(200, payload)

    assert result.category is Category.PERMANENT
    assert result.provider_message_id == "PART-1"
    assert result.error_code == "sms-1"
    assert result.error is not None and "1 of 2 parts" in result.error


async def send_refused_with(code: str) -> Category:
    result = await send_answered_by(200, refused(code.removeprefix("sms-"), f"error {code}"))
    assert result.error_code == code
    assert result.error == f"error {code}"
    assert result.provider_message_id is None
    return result.category


def receipt_failing_with(code: str) -> Category:
    request = form_receipt(status="failed", **{"err-code": code.removeprefix("dlr-")})
    parsed = provider().parse_receipt(request)
    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code == code
    return parsed.category


@pytest.mark.parametrize(("code", "category"), sorted(ERROR_CATEGORIES.items()))
async def test_each_known_vonage_code_has_its_category(code: str, category: Category) -> None:
    # sms-N rows are the send API's status, dlr-N rows a receipt's err-code.
    assert code.startswith(("sms-", "dlr-"))
    if code.startswith("sms-"):
        assert await send_refused_with(code) is category
    else:
        assert receipt_failing_with(code) is category


def test_the_table_covers_every_documented_sms_api_status_and_dlr_err_code() -> None:
    send_statuses = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 22, 23, 29, 32, 33}
    dlr_codes = {*range(1, 16), 95, 99}

    assert {f"sms-{n}" for n in send_statuses} | {f"dlr-{n}" for n in dlr_codes} == set(
        ERROR_CATEGORIES
    )


async def test_a_status_zero_sent_as_a_number_is_accepted() -> None:
    payload = accepted()
    payload["messages"][0]["status"] = 0

    assert (await send_answered_by(200, payload)).ok


async def test_an_unknown_status_in_a_200_is_permanent() -> None:
    result = await send_answered_by(200, refused("99"))

    assert result.category is Category.PERMANENT
    assert result.error_code == "sms-99"


async def test_a_part_without_a_status_is_permanent() -> None:
    result = await send_answered_by(200, {"message-count": "1", "messages": [{"to": "1"}]})

    assert result.category is Category.PERMANENT
    assert result.error_code == "sms-missing"


async def test_429_is_throttled_and_honours_retry_after() -> None:
    result = await send_answered_by(429, body="slow down", headers={"Retry-After": "3"})

    assert result.category is Category.THROTTLED
    assert result.retry_after_s == 3
    assert result.error_code == "http_429"


async def test_429_with_a_vonage_body_is_still_throttled() -> None:
    result = await send_answered_by(429, refused("3"), headers={"Retry-After": "2"})

    assert result.category is Category.THROTTLED
    assert result.retry_after_s == 2


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateways_502_or_504_leaves_it_uncertain_whether_the_text_went(status: int) -> None:
    # A gateway answered, not vonage: the provider behind it may have taken the text.
    with pytest.raises(ProviderUncertain):
        await send_answered_by(status, body="<html>oops</html>")


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_transient(status: int) -> None:
    result = await send_answered_by(status, body="<html>oops</html>")

    assert result.category is Category.TRANSIENT
    assert result.error_code == f"http_{status}"


@pytest.mark.parametrize("status", [401, 403])
async def test_an_authentication_failure_is_transient(status: int) -> None:
    result = await send_answered_by(status, {"type": "unauthorized", "title": "Unauthorized"})

    assert result.category is Category.TRANSIENT


@pytest.mark.parametrize("status", [400, 404, 405, 422])
async def test_an_unknown_4xx_is_permanent(status: int) -> None:
    result = await send_answered_by(status, {"title": "Bad Request"})

    assert result.category is Category.PERMANENT
    assert result.error_code == f"http_{status}"


@pytest.mark.parametrize(
    "payload", [{}, {"messages": "nope"}, {"message-count": "0", "messages": []}, ["0"]]
)
async def test_a_200_without_vonages_messages_is_ambiguous_never_resent_blindly(
    payload: object,
) -> None:
    # Vonage may have taken the text and its answer be truncated: resending or
    # failing over could text the person twice.
    result = await send_answered_by(200, payload)

    assert result.category is Category.AMBIGUOUS
    assert result.error_code == "http_200"


async def test_a_200_that_is_not_json_is_ambiguous() -> None:
    result = await send_answered_by(200, body="<html>captive portal</html>")

    assert result.category is Category.AMBIGUOUS


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
    assert caught.value.provider == "vonage"


# -- 4. signatures ------------------------------------------------------------------------------

RECEIPT_URL = "https://hooks.example.com/webhooks/vonage/status?mid=msg-0001"
RECEIPT_PATH_URL = "https://hooks.example.com/webhooks/vonage/status"
RECEIPT_PARAMS = {
    "msisdn": "15551234567",
    "to": "15557654321",
    "network-code": "310260",
    "messageId": MESSAGE_ID,
    "price": "0.03330000",
    "status": "delivered",
    "scts": "2311142213",
    "err-code": "0",
    "api-key": API_KEY,
    "client-ref": "msg-0001",
    "message-timestamp": "2023-11-14 22:13:20",
    "timestamp": str(NOW),
    "nonce": "ec11dd3e-1e7f-4db5-9467-82b02cd223b9",
}


def sdk_signed(
    params: dict[str, str], method: str = "sha256hmac", secret: str = SIGNATURE_SECRET
) -> dict[str, str]:
    """``params`` and the SDK's ``sig``, upper-cased as Vonage sends HMAC digests."""
    auth = Auth(api_key=API_KEY, signature_secret=secret, signature_method=SDK_METHODS[method])
    return {**params, "sig": auth.sign_params(dict(params)).upper()}


def md5_hash_signed(params: dict[str, str], secret: str = SIGNATURE_SECRET) -> dict[str, str]:
    return {**params, "sig": signature(params, secret, "md5hash")}


def form_request(
    params: dict[str, str] | list[tuple[str, str]],
    url: str = RECEIPT_URL,
    content_type: str = FORM,
) -> WebhookRequest:
    return WebhookRequest(
        url=url, headers={}, body=urlencode(params).encode(), content_type=content_type
    )


def json_request(params: dict[str, Any], url: str = RECEIPT_URL) -> WebhookRequest:
    return WebhookRequest(
        url=url, headers={}, body=json.dumps(params).encode(), content_type="application/json"
    )


def get_request(params: dict[str, str]) -> WebhookRequest:
    query = urlencode({"mid": "msg-0001", **params})
    return WebhookRequest(url=f"{RECEIPT_PATH_URL}?{query}", headers={}, body=b"", content_type="")


def verifier(method: str = "sha256hmac", **options: Any) -> VonageProvider:
    return provider(signature_method=method, **options)


SIGNING_CASES = [
    pytest.param({"a": "1", "b": "2", "timestamp": "1461605396"}, id="sdk-vector-params"),
    pytest.param(RECEIPT_PARAMS, id="receipt"),
    pytest.param(
        {"text": "a&b=c", "x=y": "1", "timestamp": "1", "": "blank-name"}, id="separators"
    ),
    pytest.param({"text": "Zoë 你好 👍 + %", "Émoji": "✓", "timestamp": "1"}, id="unicode"),
    pytest.param({"err-code": "", "client-ref": " ", "timestamp": "1"}, id="blank-values"),
]


@pytest.mark.parametrize("method", sorted(SDK_METHODS))
@pytest.mark.parametrize("params", SIGNING_CASES)
def test_signature_matches_the_sdk(params: dict[str, str], method: str) -> None:
    sdk_auth = Auth(
        api_key=API_KEY, signature_secret=SIGNATURE_SECRET, signature_method=SDK_METHODS[method]
    )

    assert signature(params, SIGNATURE_SECRET, method) == sdk_auth.sign_params(dict(params))


def test_md5_hash_signature_matches_the_vector_in_vonages_sdk_tests() -> None:
    params = {"a": "1", "b": "2", "timestamp": "1461605396"}

    assert signature(params, "secret", "md5hash") == "6af838ef94998832dbfc29020b564830"


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(st.text(max_size=12), st.text(max_size=20), max_size=8),
    method=st.sampled_from(sorted(SDK_METHODS)),
)
def test_signature_equals_the_sdks_for_any_parameters(params: dict[str, str], method: str) -> None:
    params = {**params, "timestamp": str(NOW)}  # the SDK adds its own when there is none
    sdk_auth = Auth(
        api_key=API_KEY, signature_secret=SIGNATURE_SECRET, signature_method=SDK_METHODS[method]
    )

    assert signature(params, SIGNATURE_SECRET, method) == sdk_auth.sign_params(dict(params))


@pytest.mark.parametrize("method", sorted(SDK_METHODS))
def test_verify_accepts_a_receipt_the_sdk_signed(method: str) -> None:
    signed = sdk_signed(RECEIPT_PARAMS, method)
    sdk_auth = Auth(
        api_key=API_KEY, signature_secret=SIGNATURE_SECRET, signature_method=SDK_METHODS[method]
    )
    assert sdk_auth.check_signature(dict(signed))

    assert verifier(method).verify_signature(form_request(signed))


def test_verify_accepts_a_lower_case_signature_too() -> None:
    signed = sdk_signed(RECEIPT_PARAMS)
    signed["sig"] = signed["sig"].lower()

    assert verifier().verify_signature(form_request(signed))


def test_verify_accepts_an_md5_hash_signed_receipt() -> None:
    request = form_request(md5_hash_signed(RECEIPT_PARAMS))

    assert verifier("md5hash").verify_signature(request)


def test_verify_accepts_a_signed_json_receipt() -> None:
    assert verifier().verify_signature(json_request(sdk_signed(RECEIPT_PARAMS)))


def test_verify_accepts_a_signed_get_receipt() -> None:
    # A GET receipt's parameters sit in the callback URL's query, beside sendq's mid.
    assert verifier().verify_signature(get_request(sdk_signed(RECEIPT_PARAMS)))


def test_verify_accepts_a_receipt_whose_signature_covers_the_callback_query() -> None:
    signed = sdk_signed({**RECEIPT_PARAMS, "mid": "msg-0001"})
    del signed["mid"]  # it arrives in the URL, not the body

    assert verifier().verify_signature(form_request(signed))


def test_verify_accepts_a_signature_that_skips_blank_values_as_the_java_sdk_does() -> None:
    params = {**RECEIPT_PARAMS, "price": "", "network-code": " "}
    signed = sdk_signed({k: v for k, v in params.items() if v.strip()})
    request = form_request({**params, "sig": signed["sig"]})

    assert verifier().verify_signature(request)


def test_verify_honours_the_tolerance_at_its_edge() -> None:
    signed = sdk_signed({**RECEIPT_PARAMS, "timestamp": str(NOW - 300)})

    assert verifier().verify_signature(form_request(signed))
    assert not verifier(tolerance_s=299).verify_signature(form_request(signed))


GENUINE = sdk_signed(RECEIPT_PARAMS)


def test_verify_refuses_a_tampered_body_parameter() -> None:
    assert not verifier().verify_signature(form_request({**GENUINE, "status": "failed"}))


def test_verify_refuses_an_added_parameter() -> None:
    assert not verifier().verify_signature(form_request({**GENUINE, "extra": "1"}))


def test_verify_refuses_a_removed_parameter() -> None:
    trimmed = {k: v for k, v in GENUINE.items() if k != "err-code"}

    assert not verifier().verify_signature(form_request(trimmed))


def test_verify_refuses_a_repeated_parameter() -> None:
    body = [*GENUINE.items(), ("status", "failed")]

    assert not verifier().verify_signature(form_request(body))


def test_verify_refuses_a_tampered_timestamp() -> None:
    assert not verifier().verify_signature(form_request({**GENUINE, "timestamp": str(NOW + 1)}))


@pytest.mark.parametrize("age_s", [301, 3600, -301])
def test_verify_refuses_a_validly_signed_receipt_outside_the_window(age_s: int) -> None:
    signed = sdk_signed({**RECEIPT_PARAMS, "timestamp": str(NOW - age_s)})

    assert not verifier().verify_signature(form_request(signed))


ARABIC_INDIC_DIGITS = "\u0661\u0667" + "\u0660" * 8  # str.isdigit() says yes


@pytest.mark.parametrize(
    "timestamp", ["", "soon", "1700000000.5", "-1700000000", ARABIC_INDIC_DIGITS, "9" * 40]
)
def test_verify_refuses_a_malformed_timestamp(timestamp: str) -> None:
    signed = sdk_signed({**RECEIPT_PARAMS, "timestamp": timestamp})

    assert not verifier().verify_signature(form_request(signed))


def test_verify_refuses_a_receipt_without_a_timestamp() -> None:
    params = {k: v for k, v in RECEIPT_PARAMS.items() if k != "timestamp"}
    signed = {**params, "sig": signature(params, SIGNATURE_SECRET, "sha256hmac")}

    assert not verifier().verify_signature(form_request(signed))


def test_verify_refuses_a_signature_made_with_another_secret() -> None:
    other = sdk_signed(RECEIPT_PARAMS, secret="another-signature-secret")

    assert not verifier().verify_signature(form_request(other))
    assert verifier(signature_secret="another-signature-secret").verify_signature(
        form_request(other)
    )


@pytest.mark.parametrize(
    ("signed_with", "checked_with"),
    [("md5hmac", "md5hash"), ("sha256hmac", "sha1hmac"), ("sha512hmac", "sha256hmac")],
)
def test_verify_refuses_a_signature_made_with_another_method(
    signed_with: str, checked_with: str
) -> None:
    signed = sdk_signed(RECEIPT_PARAMS, signed_with)

    assert not verifier(checked_with).verify_signature(form_request(signed))


def test_verify_refuses_an_unsigned_receipt() -> None:
    assert not verifier().verify_signature(form_request(RECEIPT_PARAMS))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "g" * 64,
        GENUINE["sig"][:-1],
        GENUINE["sig"] + "0",
        "é" * 64,
        "0x" + GENUINE["sig"][2:],
    ],
    ids=["empty", "word", "not-hex", "short", "long", "non-ascii", "prefixed"],
)
def test_verify_refuses_a_garbage_signature(garbage: str) -> None:
    assert not verifier().verify_signature(form_request({**GENUINE, "sig": garbage}))


def test_verify_refuses_a_tampered_query_of_a_get_receipt() -> None:
    signed = sdk_signed(RECEIPT_PARAMS)
    request = get_request({**signed, "msisdn": "15550000000"})

    assert not verifier().verify_signature(request)


def test_verify_refuses_an_unsigned_mid_when_no_client_ref_names_the_text() -> None:
    # Vonage may sign without sendq's mid; then only the signed client-ref can name the text.
    params = {k: v for k, v in RECEIPT_PARAMS.items() if k != "client-ref"}

    assert not verifier().verify_signature(form_request(sdk_signed(params)))
    signed_with_mid = sdk_signed({**params, "mid": "msg-0001"})
    del signed_with_mid["mid"]
    assert verifier().verify_signature(form_request(signed_with_mid))


def test_a_mid_swapped_under_a_signed_client_ref_is_refused_when_parsed() -> None:
    request = form_request(GENUINE, url=RECEIPT_PATH_URL + "?mid=msg-0002")

    with pytest.raises(InvalidWebhook):
        verifier().parse_receipt(request)


def test_verify_refuses_a_body_that_is_not_utf8() -> None:
    body = urlencode(GENUINE).encode() + b"&text=\xff\xfe"
    request = WebhookRequest(url=RECEIPT_URL, headers={}, body=body, content_type=FORM)

    assert not verifier().verify_signature(request)


def test_verify_refuses_a_percent_encoding_that_is_not_utf8() -> None:
    body = urlencode(GENUINE).encode() + b"&text=%FF"
    request = WebhookRequest(url=RECEIPT_URL, headers={}, body=body, content_type=FORM)

    assert not verifier().verify_signature(request)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b'["sig", "timestamp"]', "application/json"),
        (json.dumps({**GENUINE, "price": 0.0333}).encode(), "application/json"),
        (json.dumps({**GENUINE, "err-code": None}).encode(), "application/json"),
        (json.dumps({**GENUINE, "concat": True}).encode(), "application/json"),
        (urlencode(GENUINE).encode(), "text/plain"),
        (urlencode(GENUINE).encode(), ""),
    ],
    ids=["bad-json", "json-array", "json-float", "json-null", "json-bool", "text", "no-type"],
)
def test_verify_refuses_a_body_it_cannot_read(body: bytes, content_type: str) -> None:
    request = WebhookRequest(url=RECEIPT_URL, headers={}, body=body, content_type=content_type)

    assert not verifier().verify_signature(request)


def test_verify_refuses_a_url_it_cannot_parse() -> None:
    request = form_request(GENUINE, url="https://[::1/webhooks/vonage/status?mid=msg-0001")

    assert not verifier().verify_signature(request)


value_text = st.text(max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(
        st.text(min_size=1, max_size=12).filter(lambda n: n not in ("sig", "timestamp", "mid")),
        value_text,
        max_size=8,
    ),
    method=st.sampled_from(sorted(SDK_METHODS)),
)
def test_verify_accepts_any_receipt_the_sdk_signed(params: dict[str, str], method: str) -> None:
    signed = sdk_signed({**params, "timestamp": str(NOW)}, method)

    assert verifier(method).verify_signature(form_request(signed, url=RECEIPT_PATH_URL))


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(RECEIPT_PARAMS)), value=st.text(max_size=20))
def test_verify_refuses_any_changed_value(name: str, value: str) -> None:
    def folded(v: str) -> str:
        return v.replace("&", "_").replace("=", "_")

    # A value that folds to the signed one is the signed one, as far as Vonage's scheme goes.
    assume(folded(value) != folded(RECEIPT_PARAMS[name]))

    assert not verifier().verify_signature(form_request({**GENUINE, name: value}))


# -- 5. receipts ------------------------------------------------------------------------------


def form_receipt(url: str = RECEIPT_URL, content_type: str = FORM, **fields: str) -> WebhookRequest:
    return form_request({**RECEIPT_PARAMS, **fields}, url=url, content_type=content_type)


def test_a_delivered_receipt_is_ok() -> None:
    parsed = provider().parse_receipt(form_receipt())

    assert parsed.provider_message_id == MESSAGE_ID
    assert parsed.status == Status.DELIVERED
    assert parsed.message_id == "msg-0001"
    assert parsed.category is Category.OK
    assert parsed.error_code is None


def test_an_anti_spam_rejection_is_a_carrier_block() -> None:
    parsed = provider().parse_receipt(form_receipt(status="rejected", **{"err-code": "6"}))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code == "dlr-6"
    assert parsed.category is Category.CARRIER_BLOCK


def test_an_opted_out_recipient_is_opted_out() -> None:
    # Vonage's own example (Opt-Out Assist docs): failed, err-code 9, no client-ref.
    params = {k: v for k, v in RECEIPT_PARAMS.items() if k != "client-ref"}
    request = form_request({**params, "status": "failed", "err-code": "9"})

    parsed = provider().parse_receipt(request)

    assert parsed.category is Category.OPTED_OUT
    assert parsed.message_id == "msg-0001"  # from the callback URL's mid


@pytest.mark.parametrize("raw", ["0", ""])
def test_an_expired_receipt_without_a_code_is_ambiguous(raw: str) -> None:
    parsed = provider().parse_receipt(form_receipt(status="expired", **{"err-code": raw}))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.error_code is None
    assert parsed.category is Category.AMBIGUOUS


def test_an_expired_receipt_with_a_code_takes_the_codes_category() -> None:
    parsed = provider().parse_receipt(form_receipt(status="expired", **{"err-code": "3"}))

    assert parsed.error_code == "dlr-3"
    assert parsed.category is Category.BAD_NUMBER


@pytest.mark.parametrize("status", ["failed", "rejected"])
def test_a_failed_receipt_without_a_code_is_permanent(status: str) -> None:
    parsed = provider().parse_receipt(form_receipt(status=status, **{"err-code": "0"}))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.category is Category.PERMANENT


def test_an_unknown_err_code_is_permanent() -> None:
    parsed = provider().parse_receipt(form_receipt(status="failed", **{"err-code": "042"}))

    assert parsed.error_code == "dlr-42"
    assert parsed.category is Category.PERMANENT


def test_an_accepted_receipt_means_sent() -> None:
    parsed = provider().parse_receipt(form_receipt(status="accepted"))

    assert parsed.status == Status.SENT
    assert parsed.category is Category.OK


@pytest.mark.parametrize("progress", ["buffered", "unknown", "deleted"])
def test_an_intermediate_receipt_reports_progress_only(progress: str) -> None:
    parsed = provider().parse_receipt(form_receipt(status=progress, **{"err-code": "1"}))

    assert parsed.status == progress
    assert parsed.category is Category.OK
    assert parsed.error_code is None
    assert parsed.message_id == "msg-0001"


def test_a_receipt_status_is_read_in_any_case() -> None:
    assert provider().parse_receipt(form_receipt(status="DELIVERED")).status == Status.DELIVERED


def test_a_json_receipt_is_parsed() -> None:
    params = {**RECEIPT_PARAMS, "status": "failed", "err-code": "14"}

    parsed = provider().parse_receipt(json_request(params))

    assert parsed.status == Status.UNDELIVERED
    assert parsed.category is Category.CARRIER_BLOCK


def test_a_get_receipt_is_parsed_from_the_query() -> None:
    parsed = provider().parse_receipt(get_request({**RECEIPT_PARAMS, "status": "accepted"}))

    assert parsed.status == Status.SENT
    assert parsed.message_id == "msg-0001"


def test_a_receipt_names_our_message_by_client_ref_without_a_mid() -> None:
    parsed = provider().parse_receipt(form_receipt(url=RECEIPT_PATH_URL))

    assert parsed.message_id == "msg-0001"


def test_a_receipt_without_client_ref_or_mid_has_no_message_id() -> None:
    params = {k: v for k, v in RECEIPT_PARAMS.items() if k != "client-ref"}

    assert provider().parse_receipt(form_request(params, url=RECEIPT_PATH_URL)).message_id is None


@pytest.mark.parametrize("missing", ["messageId", "status"])
def test_a_receipt_without_its_id_or_status_is_invalid(missing: str) -> None:
    params = {k: v for k, v in RECEIPT_PARAMS.items() if k != missing}

    with pytest.raises(InvalidWebhook):
        provider().parse_receipt(form_request(params))


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data"])
def test_a_receipt_in_another_content_type_is_invalid(content_type: str) -> None:
    with pytest.raises(InvalidWebhook):
        provider().parse_receipt(form_receipt(content_type=content_type))


def test_a_form_receipt_with_a_charset_is_accepted() -> None:
    parsed = provider().parse_receipt(form_receipt(content_type=f"{FORM}; charset=UTF-8"))

    assert parsed.status == Status.DELIVERED


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"messageId=1&status=delivered&text=\xff", FORM),
        (b"messageId=1&status=delivered&text=%FF", FORM),
        (b"{not json", "application/json"),
        (b'["delivered"]', "application/json"),
        (b'{"messageId": "1", "status": {"code": "delivered"}}', "application/json"),
        (b"\xff\xfe", "application/json"),
    ],
    ids=["raw-bytes", "percent-bytes", "bad-json", "json-array", "json-nested", "json-bytes"],
)
def test_a_garbage_receipt_is_invalid(body: bytes, content_type: str) -> None:
    request = WebhookRequest(url=RECEIPT_URL, headers={}, body=body, content_type=content_type)

    with pytest.raises(InvalidWebhook):
        provider().parse_receipt(request)


def test_a_receipt_repeating_a_parameter_is_invalid() -> None:
    body = [*RECEIPT_PARAMS.items(), ("status", "failed")]

    with pytest.raises(InvalidWebhook):
        provider().parse_receipt(form_request(body))


def test_a_receipt_on_an_unparsable_url_is_invalid() -> None:
    with pytest.raises(InvalidWebhook):
        provider().parse_receipt(form_receipt(url="https://[::1/cb?mid=msg-0001"))


# -- 6. construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"signature_method": "sha256"},
        {"api_secret": None},
        {"api_secret": ""},
        {"signature_secret": ""},
    ],
    ids=["sdk-method-name", "no-secret", "empty-secret", "no-signature-secret"],
)
def test_a_provider_without_usable_settings_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        provider(**options)


def test_a_signing_provider_needs_no_api_secret() -> None:
    assert provider(api_secret=None, sign_requests=True).api_key == API_KEY


def test_every_signature_method_has_a_digest_length() -> None:
    for method in vonage.SIGNATURE_METHODS:
        assert len(signature({"a": "1"}, "s", method)) == vonage._digest_chars(method)


@pytest.fixture(autouse=True)
def _no_real_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK must only ever reach the recording adapter."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the SDK tried the real network")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)
    yield
