"""Inbound texts in each adapter, checked against the providers' official SDKs.

For each provider: a text a person sent, in the provider's real webhook shape
(validated by the SDK's own model where it has one), signed as the provider
signs it, is accepted where the SDK's validator accepts it and read into an
InboundText with both numbers in E.164; a receipt is not taken for one; and
every bad input is refused with a reason naming what is wrong.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import telnyx
import telnyx.lib  # applies the SDK's ed25519 ``unwrap``
import urllib3
from bandwidth.models.inbound_callback import InboundCallback
from bandwidth.models.status_callback import StatusCallback
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3, validate_v3_signature
from telnyx.types.inbound_message_webhook_event import InboundMessageWebhookEvent
from twilio.request_validator import RequestValidator
from vonage_http_client.auth import Auth

from worker.errors import InvalidWebhook
from worker.providers.bandwidth import BandwidthProvider
from worker.providers.base import InboundText, Provider, WebhookRequest
from worker.providers.plivo import PlivoProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider
from worker.providers.vonage import VonageProvider

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
PERSON = "+12015550123"
OURS = "+12015550100"


def offline() -> httpx.AsyncClient:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("this test must not send anything")

    return httpx.AsyncClient(transport=httpx.MockTransport(unreachable))


def refused(event: object, *words: str) -> None:
    """An event refused with a reason that names each of ``words``."""
    assert isinstance(event, InvalidWebhook), event
    for word in words:
        assert word in str(event), str(event)


def only_text(provider: Provider, request: WebhookRequest) -> InboundText:
    [(index, parsed)] = provider.parse_inbound(request)
    assert index == 0
    assert isinstance(parsed, InboundText), parsed
    return parsed


def only_event(provider: Provider, request: WebhookRequest) -> object:
    [(index, parsed)] = provider.parse_inbound(request)
    assert index == 0
    return parsed


# -- Twilio ------------------------------------------------------------------------------

TWILIO_TOKEN = "12345678901234567890123456789012"
TWILIO_URL = "https://hooks.example.com/webhooks/twilio/inbound"
TWILIO_SID = "SMfedcba9876543210fedcba9876543210"
TWILIO_INCOMING = {
    "ToCountry": "US",
    "ToState": "NJ",
    "SmsMessageSid": TWILIO_SID,
    "NumMedia": "0",
    "ToCity": "",
    "FromZip": "10001",
    "SmsSid": TWILIO_SID,
    "FromState": "NY",
    "SmsStatus": "received",
    "FromCity": "NEW YORK",
    "Body": "Stop.",
    "FromCountry": "US",
    "To": OURS,
    "MessagingServiceSid": "MG0123456789abcdef0123456789abcdef",
    "ToZip": "",
    "NumSegments": "1",
    "MessageSid": TWILIO_SID,
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "From": PERSON,
    "ApiVersion": "2010-04-01",
}


def twilio() -> TwilioProvider:
    return TwilioProvider(account_sid="AC" + "0" * 32, auth_token=TWILIO_TOKEN, client=offline())


def twilio_post(
    params: Mapping[str, str], signed_params: Mapping[str, str] | None = None
) -> WebhookRequest:
    signed = RequestValidator(TWILIO_TOKEN).compute_signature(
        TWILIO_URL, dict(params if signed_params is None else signed_params)
    )
    return WebhookRequest(
        url=TWILIO_URL,
        headers={"x-twilio-signature": signed},
        body=urlencode(params).encode(),
        content_type=FORM,
    )


def twilio_without(*names: str, **changes: str) -> WebhookRequest:
    params = {k: v for k, v in TWILIO_INCOMING.items() if k not in names}
    return twilio_post({**params, **changes})


def test_a_twilio_incoming_text_verifies_as_the_sdk_verifies_it_and_is_read() -> None:
    hook = twilio_post(TWILIO_INCOMING)
    signed = hook.headers["x-twilio-signature"]

    assert RequestValidator(TWILIO_TOKEN).validate(TWILIO_URL, TWILIO_INCOMING, signed)
    assert twilio().verify_signature(hook)
    assert twilio().is_inbound(hook)
    assert only_text(twilio(), hook) == InboundText(TWILIO_SID, PERSON, OURS, "Stop.")


def test_a_twilio_incoming_text_by_get_is_verified_and_read_from_its_query() -> None:
    url = f"{TWILIO_URL}?{urlencode(TWILIO_INCOMING)}"
    signed = RequestValidator(TWILIO_TOKEN).compute_signature(url, {})
    hook = WebhookRequest(
        url=url, headers={"x-twilio-signature": signed}, body=b"", content_type=""
    )

    assert RequestValidator(TWILIO_TOKEN).validate(url, {}, signed)
    assert twilio().verify_signature(hook)
    assert only_text(twilio(), hook).body == "Stop."


def test_a_tampered_twilio_incoming_text_is_refused_by_us_and_the_sdk() -> None:
    forged = {**TWILIO_INCOMING, "Body": "START"}
    hook = twilio_post(forged, signed_params=TWILIO_INCOMING)

    assert not RequestValidator(TWILIO_TOKEN).validate(
        TWILIO_URL, forged, hook.headers["x-twilio-signature"]
    )
    assert not twilio().verify_signature(hook)


def test_an_unsigned_twilio_incoming_text_is_refused() -> None:
    hook = twilio_post(TWILIO_INCOMING)

    assert not twilio().verify_signature(
        WebhookRequest(url=hook.url, headers={}, body=hook.body, content_type=FORM)
    )


def test_a_twilio_status_callback_is_not_an_inbound_text() -> None:
    receipt = {**TWILIO_INCOMING, "MessageStatus": "delivered", "SmsStatus": "delivered"}
    hook = twilio_post(receipt)

    assert not twilio().is_inbound(hook)
    with pytest.raises(InvalidWebhook, match="status callback"):
        twilio().parse_inbound(hook)


def test_a_twilio_picture_without_words_is_an_inbound_text_with_an_empty_body() -> None:
    hook = twilio_without("Body", NumMedia="1", MediaUrl0="https://api.twilio.com/media/1")

    assert only_text(twilio(), hook).body == ""


@pytest.mark.parametrize(
    ("hook", "words"),
    [
        pytest.param(twilio_without("From"), ["From", "required"], id="no-from"),
        pytest.param(twilio_without("To"), ["To", "required"], id="no-to"),
        pytest.param(twilio_without("MessageSid", "SmsSid"), ["MessageSid"], id="no-sid"),
        pytest.param(twilio_without("Body"), ["Body", "required"], id="no-body"),
        pytest.param(twilio_without(From="+1555"), ["From", "'+1555'"], id="short-from"),
        pytest.param(twilio_without(From="whatsapp:+12015550123"), ["From"], id="not-sms"),
        pytest.param(twilio_without(To="hello"), ["To", "'hello'"], id="bad-to"),
    ],
)
def test_a_twilio_incoming_text_with_a_bad_field_is_refused_naming_it(
    hook: WebhookRequest, words: list[str]
) -> None:
    refused(only_event(twilio(), hook), *words)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b'{"From": "+15551234567"}', JSON, "form-encoded"),
        (b"From=%2B1555&Body=\xff", FORM, "UTF-8"),
    ],
)
def test_an_unreadable_twilio_request_is_refused_as_a_whole(
    body: bytes, content_type: str, reason: str
) -> None:
    hook = WebhookRequest(url=TWILIO_URL, headers={}, body=body, content_type=content_type)

    assert not twilio().is_inbound(hook)
    with pytest.raises(InvalidWebhook, match=reason):
        twilio().parse_inbound(hook)


def test_a_twilio_request_with_only_sendqs_query_is_not_an_inbound_text() -> None:
    url = "https://hooks.example.com/webhooks/twilio/status?mid=msg-0001&att=1"
    hook = WebhookRequest(url=url, headers={}, body=b"", content_type="")

    assert not twilio().is_inbound(hook)


# -- Telnyx ------------------------------------------------------------------------------

TELNYX_KEY = Ed25519PrivateKey.generate()
TELNYX_PUBLIC = base64.b64encode(TELNYX_KEY.public_key().public_bytes_raw()).decode()
TELNYX_ID = "b0c3fa2e-8d1a-4b0c-9a7e-2f1c8a55d001"


def telnyx_received(**payload_changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "record_type": "message",
        "id": TELNYX_ID,
        "direction": "inbound",
        "type": "SMS",
        "messaging_profile_id": "40017a31-5de2-4ea1-9d4e-4a8f8f7e0f11",
        "from": {"phone_number": PERSON, "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"},
        "to": [
            {
                "phone_number": OURS,
                "status": "webhook_delivered",
                "carrier": "Telnyx",
                "line_type": "Wireline",
            }
        ],
        "text": "STOP",
        "media": [],
        "encoding": "GSM-7",
        "parts": 1,
        "received_at": "2026-12-01T18:10:02.574+00:00",
        "errors": [],
    }
    payload.update(payload_changes)
    return {
        "data": {
            "record_type": "event",
            "id": "e0f3c7d2-5b3a-4c1e-8f7d-3a2b1c0d9e8f",
            "event_type": "message.received",
            "occurred_at": "2026-12-01T18:10:02.600+00:00",
            "payload": {k: v for k, v in payload.items() if v is not None},
        },
        "meta": {"attempt": 1, "delivered_to": "https://hooks.example.com/webhooks/telnyx/inbound"},
    }


def telnyx_provider() -> TelnyxProvider:
    return TelnyxProvider(api_key="KEY0123", public_key=TELNYX_PUBLIC, client=offline())


def telnyx_request(body: dict[str, Any] | bytes, content_type: str = JSON) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    signed = base64.b64encode(TELNYX_KEY.sign(f"{timestamp}|".encode() + raw)).decode()
    return WebhookRequest(
        url="https://hooks.example.com/webhooks/telnyx/inbound",
        headers={"telnyx-signature-ed25519": signed, "telnyx-timestamp": timestamp},
        body=raw,
        content_type=content_type,
    )


def test_a_telnyx_inbound_text_is_the_sdks_shape_verifies_as_it_does_and_is_read() -> None:
    body = telnyx_received()
    hook = telnyx_request(body)
    client = telnyx.Telnyx(api_key="KEY0123", public_key=TELNYX_PUBLIC)

    event = client.webhooks.unwrap(hook.body.decode(), headers=dict(hook.headers))
    model = InboundMessageWebhookEvent.model_validate(body)
    assert model.data is not None and model.data.event_type == "message.received"
    assert event is not None
    assert telnyx_provider().verify_signature(hook)
    assert telnyx_provider().is_inbound(hook)
    assert only_text(telnyx_provider(), hook) == InboundText(
        provider_message_id=TELNYX_ID,
        sender=PERSON,
        to=OURS,
        body="STOP",
        received_ms=1796148602574,
        carrier="T-MOBILE USA, INC.",
    )


def test_a_tampered_telnyx_inbound_text_is_refused() -> None:
    hook = telnyx_request(telnyx_received())
    forged = hook.body.replace(b"STOP", b"START")

    assert not telnyx_provider().verify_signature(
        WebhookRequest(url=hook.url, headers=hook.headers, body=forged, content_type=JSON)
    )
    assert not telnyx_provider().verify_signature(
        WebhookRequest(url=hook.url, headers={}, body=hook.body, content_type=JSON)
    )


def test_a_telnyx_delivery_event_is_not_an_inbound_text() -> None:
    body = telnyx_received()
    body["data"]["event_type"] = "message.finalized"
    hook = telnyx_request(body)

    assert not telnyx_provider().is_inbound(hook)
    with pytest.raises(InvalidWebhook, match=r"'message\.finalized' is not an inbound message"):
        telnyx_provider().parse_inbound(hook)


def test_a_telnyx_whatsapp_text_names_our_number_as_a_string() -> None:
    hook = telnyx_request(telnyx_received(to=OURS, type="WHATSAPP"))

    assert only_text(telnyx_provider(), hook).to == OURS


def test_a_telnyx_picture_without_words_has_an_empty_body() -> None:
    media = [{"url": "https://media.telnyx.com/1.jpg", "content_type": "image/jpeg"}]
    hook = telnyx_request(telnyx_received(text=None, media=media, type="MMS"))

    assert only_text(telnyx_provider(), hook).body == ""


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        pytest.param({"from": {"carrier": "X"}}, ["payload.from.phone_number"], id="no-from"),
        pytest.param({"from": PERSON}, ["payload.from", "object"], id="from-not-object"),
        pytest.param({"from": {"phone_number": "+1555"}}, ["'+1555'"], id="bad-from"),
        pytest.param({"to": []}, ["payload.to[0].phone_number", "required"], id="no-to"),
        pytest.param({"id": None}, ["payload.id"], id="no-id"),
        pytest.param({"text": None}, ["payload.text", "required"], id="no-text"),
        pytest.param({"text": 42}, ["payload.text", "string"], id="text-not-string"),
    ],
)
def test_a_telnyx_inbound_text_with_a_bad_field_is_refused_naming_it(
    changes: dict[str, Any], words: list[str]
) -> None:
    refused(only_event(telnyx_provider(), telnyx_request(telnyx_received(**changes))), *words)


def test_a_telnyx_inbound_event_without_a_payload_is_refused() -> None:
    body = telnyx_received()
    body["data"]["payload"] = "STOP"

    refused(only_event(telnyx_provider(), telnyx_request(body)), "data.payload")


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"not json", JSON, "not JSON"),
        (b"\xff\xfe", JSON, "UTF-8"),
        (b"[]", JSON, '"data" object'),
        (b"text=STOP", FORM, "JSON"),
    ],
)
def test_an_unreadable_telnyx_callback_is_refused_as_a_whole(
    body: bytes, content_type: str, reason: str
) -> None:
    hook = telnyx_request(body, content_type)

    assert not telnyx_provider().is_inbound(hook)
    with pytest.raises(InvalidWebhook, match=reason):
        telnyx_provider().parse_inbound(hook)


# -- Bandwidth ----------------------------------------------------------------------------

BW_USER, BW_PASSWORD = "sendq", "cb-password-7f3a"
BW_INBOUND_USER, BW_INBOUND_PASSWORD = "sendq-in", "inbound-password-9c2e"
BW_URL = "https://hooks.example.com/webhooks/bandwidth/inbound"


def bandwidth_provider(**options: Any) -> BandwidthProvider:
    return BandwidthProvider(
        account_id="9900000",
        application_id="93de2206-9669-4e07-948d-329f4b722ee2",
        username="api-user",
        password="api-password",
        callback_username=BW_USER,
        callback_password=BW_PASSWORD,
        client=offline(),
        **options,
    )


def bw_received(
    message_id: str = "1589228074636lm4k2je7j7jklbn2", **changes: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": message_id,
        "owner": OURS,
        "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2",
        "time": "2026-12-01T18:10:02.574Z",
        "segmentCount": 1,
        "direction": "in",
        "to": [OURS],
        "from": PERSON,
        "text": "Unsubscribe",
    }
    message.update(changes)
    return {
        "type": "message-received",
        "time": "2026-12-01T18:10:02.600Z",
        "description": "Incoming message received",
        "to": OURS,
        "carrierName": "T-Mobile",
        "message": {k: v for k, v in message.items() if v is not None},
    }


def bw_delivered() -> dict[str, Any]:
    return {
        "type": "message-delivered",
        "time": "2026-12-01T18:10:01.000Z",
        "description": "ok",
        "to": PERSON,
        "message": {
            "id": "1589228074636lm4k2je7j7jkl000",
            "owner": OURS,
            "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2",
            "time": "2026-12-01T18:10:00.000Z",
            "segmentCount": 1,
            "direction": "out",
            "to": [PERSON],
            "from": OURS,
            "tag": "msg-0001",
        },
    }


def bw_request(
    events: list[Any] | bytes,
    user: str = BW_USER,
    password: str = BW_PASSWORD,
    content_type: str = JSON,
) -> WebhookRequest:
    # The Authorization header bandwidth-sdk's own urllib3 encoder makes.
    authorization = urllib3.util.make_headers(basic_auth=f"{user}:{password}")["authorization"]
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    return WebhookRequest(
        url=BW_URL, headers={"authorization": authorization}, body=body, content_type=content_type
    )


def test_a_bandwidth_inbound_text_is_the_sdks_shape_and_is_read() -> None:
    event = bw_received()
    hook = bw_request([event])

    assert InboundCallback.from_dict(event) is not None
    assert bandwidth_provider().verify_signature(hook)
    assert bandwidth_provider().is_inbound(hook)
    assert only_text(bandwidth_provider(), hook) == InboundText(
        provider_message_id="1589228074636lm4k2je7j7jklbn2",
        sender=PERSON,
        to=OURS,
        body="Unsubscribe",
        received_ms=1796148602574,
        carrier="T-Mobile",
    )


def test_a_bandwidth_batch_yields_each_inbound_text_at_its_index_and_leaves_receipts_out() -> None:
    bad = bw_received("1589228074636badbadbadbad00", **{"from": "+1555"})
    batch = [bw_received(), bw_delivered(), bad, bw_received("1589228074636second0000000")]
    assert StatusCallback.from_dict(bw_delivered()) is not None
    hook = bw_request(batch)

    parsed = bandwidth_provider().parse_inbound(hook)

    assert [index for index, _ in parsed] == [0, 2, 3]
    assert isinstance(parsed[0][1], InboundText)
    refused(parsed[1][1], "message.from", "'+1555'")
    assert isinstance(parsed[2][1], InboundText)
    assert parsed[2][1].provider_message_id == "1589228074636second0000000"
    # The receipt in the same batch is still read where receipts are.
    assert [index for index, _ in bandwidth_provider().parse_events(hook)] == [1]


def test_a_bandwidth_callback_of_receipts_only_is_not_inbound() -> None:
    hook = bw_request([bw_delivered()])

    assert not bandwidth_provider().is_inbound(hook)
    with pytest.raises(InvalidWebhook, match="no message-received event"):
        bandwidth_provider().parse_inbound(hook)


def test_bandwidth_inbound_credentials_that_differ_from_the_outbound_ones_are_accepted() -> None:
    provider = bandwidth_provider(
        inbound_callback_username=BW_INBOUND_USER, inbound_callback_password=BW_INBOUND_PASSWORD
    )

    assert provider.verify_signature(
        bw_request([bw_received()], BW_INBOUND_USER, BW_INBOUND_PASSWORD)
    )
    assert provider.verify_signature(bw_request([bw_delivered()]))
    assert not provider.verify_signature(bw_request([bw_received()], BW_INBOUND_USER, BW_PASSWORD))
    assert not bandwidth_provider().verify_signature(
        bw_request([bw_received()], BW_INBOUND_USER, BW_INBOUND_PASSWORD)
    )


def test_an_unsigned_bandwidth_inbound_text_is_refused() -> None:
    hook = bw_request([bw_received()])

    assert not bandwidth_provider().verify_signature(
        WebhookRequest(url=BW_URL, headers={}, body=hook.body, content_type=JSON)
    )


@pytest.mark.parametrize(
    ("event", "words"),
    [
        pytest.param(bw_received(**{"from": None}), ["message.from", "required"], id="no-from"),
        pytest.param(bw_received(**{"from": "+1555"}), ["message.from", "'+1555'"], id="bad-from"),
        pytest.param(bw_received(id=None), ["message.id"], id="no-id"),
        pytest.param(bw_received(text=None), ["message.text", "required"], id="no-text"),
        pytest.param({**bw_received(), "message": "STOP"}, ["no message"], id="no-message"),
        pytest.param(
            {**bw_received(), "to": None, "message": {**bw_received()["message"], "owner": None}},
            ["to", "required"],
            id="no-to",
        ),
    ],
)
def test_a_bandwidth_inbound_text_with_a_bad_field_is_refused_naming_it(
    event: dict[str, Any], words: list[str]
) -> None:
    refused(only_event(bandwidth_provider(), bw_request([event])), *words)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [(b"not json", JSON, "not JSON"), (b"[]", JSON, "non-empty array"), (b"a=b", FORM, "JSON")],
)
def test_an_unreadable_bandwidth_callback_is_refused_as_a_whole(
    body: bytes, content_type: str, reason: str
) -> None:
    hook = bw_request(body, content_type=content_type)

    assert not bandwidth_provider().is_inbound(hook)
    with pytest.raises(InvalidWebhook, match=reason):
        bandwidth_provider().parse_inbound(hook)


# -- Plivo ---------------------------------------------------------------------------------

PLIVO_ID = "MA" + "A" * 18
PLIVO_TOKEN = "plivo-auth-token-0123456789abcdef"
PLIVO_URL = "https://hooks.example.com/webhooks/plivo/inbound"
NONCE = "12345678901234567890"
PLIVO_INCOMING = {
    "From": "12015550123",
    "To": "12015550100",
    "Type": "sms",
    "Text": "stop",
    "MessageUUID": "2a8c1e5a-b02c-11ef-9e2d-0242ac110004",
    "Units": "1",
    "TotalRate": "0.00000",
    "TotalAmount": "0.00000",
    "MessageIntent": "optout",
    "PowerpackUUID": "",
}


def plivo_provider() -> PlivoProvider:
    return PlivoProvider(auth_id=PLIVO_ID, auth_token=PLIVO_TOKEN, client=offline())


def plivo_post(
    params: Mapping[str, str], signed_params: Mapping[str, str] | None = None
) -> WebhookRequest:
    payload = construct_post_url(
        PLIVO_URL, dict(params if signed_params is None else signed_params)
    )
    signed = get_signature_v3(PLIVO_TOKEN.encode(), payload.decode(), NONCE.encode()).decode()
    headers = {"x-plivo-signature-v3": signed, "x-plivo-signature-v3-nonce": NONCE}
    return WebhookRequest(
        url=PLIVO_URL, headers=headers, body=urlencode(params).encode(), content_type=FORM
    )


def plivo_with(*without: str, **changes: str) -> WebhookRequest:
    params = {k: v for k, v in PLIVO_INCOMING.items() if k not in without}
    return plivo_post({**params, **changes})


def test_a_plivo_incoming_text_verifies_as_the_sdk_verifies_it_and_is_read() -> None:
    hook = plivo_post(PLIVO_INCOMING)
    signed = hook.headers["x-plivo-signature-v3"]

    assert validate_v3_signature(
        "POST", PLIVO_URL, NONCE, PLIVO_TOKEN, signed, dict(PLIVO_INCOMING)
    )
    assert plivo_provider().verify_signature(hook)
    assert plivo_provider().is_inbound(hook)
    assert only_text(plivo_provider(), hook) == InboundText(
        "2a8c1e5a-b02c-11ef-9e2d-0242ac110004", "+12015550123", "+12015550100", "stop"
    )


def test_a_plivo_incoming_text_by_get_verifies_as_the_sdk_verifies_it_and_is_read() -> None:
    url = f"{PLIVO_URL}?{urlencode(PLIVO_INCOMING)}"
    payload = construct_post_url(url, {})
    signed = get_signature_v3(PLIVO_TOKEN.encode(), payload.decode(), NONCE.encode()).decode()
    headers = {"x-plivo-signature-v3": signed, "x-plivo-signature-v3-nonce": NONCE}
    hook = WebhookRequest(url=url, headers=headers, body=b"", content_type="")

    assert validate_v3_signature("GET", url, NONCE, PLIVO_TOKEN, signed)
    assert plivo_provider().verify_signature(hook)
    assert only_text(plivo_provider(), hook).sender == "+12015550123"


def test_a_tampered_plivo_incoming_text_is_refused_by_us_and_the_sdk() -> None:
    forged = {**PLIVO_INCOMING, "Text": "start"}
    hook = plivo_post(forged, signed_params=PLIVO_INCOMING)
    signed = hook.headers["x-plivo-signature-v3"]

    assert not validate_v3_signature("POST", PLIVO_URL, NONCE, PLIVO_TOKEN, signed, forged)
    assert not plivo_provider().verify_signature(hook)


def test_a_plivo_number_outside_north_america_keeps_its_country_code() -> None:
    assert only_text(plivo_provider(), plivo_with(From="447911123456")).sender == "+447911123456"


def test_a_plivo_picture_message_reads_its_body() -> None:
    hook = plivo_with("Text", Type="mms", Body="", MediaCount="1", Media1="https://m.plivo.com/1")

    assert only_text(plivo_provider(), hook).body == ""


def test_a_plivo_delivery_receipt_is_not_an_inbound_text() -> None:
    receipt = {
        "MessageUUID": "2a8c1e5a",
        "Status": "delivered",
        "From": "12015550100",
        "To": "12015550123",
        "ErrorCode": "000",
    }
    hook = plivo_post(receipt)

    assert not plivo_provider().is_inbound(hook)
    with pytest.raises(InvalidWebhook, match="delivery receipt"):
        plivo_provider().parse_inbound(hook)


@pytest.mark.parametrize(
    ("hook", "words"),
    [
        pytest.param(plivo_with("From"), ["From", "required"], id="no-from"),
        pytest.param(plivo_with(From="1555"), ["From", "'+1555'"], id="bad-from"),
        pytest.param(plivo_with("To"), ["To", "required"], id="no-to"),
        pytest.param(plivo_with("Text"), ["Text", "required"], id="no-text"),
        pytest.param(plivo_with(MessageUUID=""), ["MessageUUID"], id="empty-uuid"),
        pytest.param(plivo_with(Type="whatsapp"), ["'whatsapp'"], id="whatsapp"),
    ],
)
def test_a_plivo_incoming_text_with_a_bad_field_is_refused_naming_it(
    hook: WebhookRequest, words: list[str]
) -> None:
    refused(only_event(plivo_provider(), hook), *words)


def test_an_unreadable_plivo_request_is_refused_as_a_whole() -> None:
    hook = WebhookRequest(url=PLIVO_URL, headers={}, body=b'{"Text": "stop"}', content_type=JSON)

    assert not plivo_provider().is_inbound(hook)
    with pytest.raises(InvalidWebhook, match="form-encoded"):
        plivo_provider().parse_inbound(hook)


# -- Vonage --------------------------------------------------------------------------------

VONAGE_SECRET = "vonage-signature-secret-0123456789"
VONAGE_URL = "https://hooks.example.com/webhooks/vonage/inbound"


def vonage_provider(now: float | None = None) -> VonageProvider:
    clock = (lambda: now) if now is not None else time.time
    return VonageProvider(
        api_key="abcd1234",
        api_secret="api-secret",
        signature_secret=VONAGE_SECRET,
        signature_method="sha256hmac",
        client=offline(),
        clock=clock,
    )


def vonage_inbound(**changes: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "msisdn": "447911123456",
        "to": "12015550100",
        "messageId": "1600000001234567",
        "text": "STOP ALL",
        "type": "text",
        "keyword": "STOP",
        "api-key": "abcd1234",
        "message-timestamp": "2026-12-01 18:10:02",
        "timestamp": str(int(time.time())),
        "nonce": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    }
    params.update(changes)
    return {k: v for k, v in params.items() if v is not None}


def vonage_signed(params: dict[str, str]) -> dict[str, str]:
    auth = Auth(api_key="abcd1234", signature_secret=VONAGE_SECRET, signature_method="sha256")
    return {**params, "sig": auth.sign_params(dict(params)).upper()}


def vonage_checked_by_sdk(params: dict[str, str]) -> bool:
    auth = Auth(api_key="abcd1234", signature_secret=VONAGE_SECRET, signature_method="sha256")
    return bool(auth.check_signature(dict(params)))


VONAGE_SHAPES = {
    "get": lambda p: WebhookRequest(
        url=f"{VONAGE_URL}?{urlencode(p)}", headers={}, body=b"", content_type=""
    ),
    "form": lambda p: WebhookRequest(
        url=VONAGE_URL, headers={}, body=urlencode(p).encode(), content_type=FORM
    ),
    "json": lambda p: WebhookRequest(
        url=VONAGE_URL, headers={}, body=json.dumps(p).encode(), content_type=JSON
    ),
}


@pytest.mark.parametrize("shape", sorted(VONAGE_SHAPES))
def test_a_vonage_inbound_text_verifies_as_the_sdk_verifies_it_and_is_read(shape: str) -> None:
    params = vonage_signed(vonage_inbound())
    hook = VONAGE_SHAPES[shape](params)

    assert vonage_checked_by_sdk(params)
    assert vonage_provider().verify_signature(hook)
    assert vonage_provider().is_inbound(hook)
    assert only_text(vonage_provider(), hook) == InboundText(
        provider_message_id="1600000001234567",
        sender="+447911123456",
        to="+12015550100",
        body="STOP ALL",
        received_ms=1796148602000,
    )


@pytest.mark.parametrize("shape", sorted(VONAGE_SHAPES))
def test_a_tampered_vonage_inbound_text_is_refused_by_us_and_the_sdk(shape: str) -> None:
    forged = {**vonage_signed(vonage_inbound()), "text": "START"}

    assert not vonage_checked_by_sdk(forged)
    assert not vonage_provider().verify_signature(VONAGE_SHAPES[shape](forged))


def test_an_unsigned_or_stale_vonage_inbound_text_is_refused() -> None:
    params = vonage_signed(vonage_inbound())

    assert not vonage_provider().verify_signature(VONAGE_SHAPES["get"](vonage_inbound()))
    assert not vonage_provider(now=time.time() + 3600).verify_signature(
        VONAGE_SHAPES["get"](params)
    )


def test_a_vonage_delivery_receipt_is_not_an_inbound_text() -> None:
    receipt = {
        "msisdn": "447911123456",
        "to": "AcmeInc",
        "messageId": "16000000",
        "status": "delivered",
        "err-code": "0",
        "message-timestamp": "2026-12-01 18:10:02",
    }
    hook = VONAGE_SHAPES["form"](receipt)

    assert not vonage_provider().is_inbound(hook)
    with pytest.raises(InvalidWebhook, match="delivery receipt"):
        vonage_provider().parse_inbound(hook)


def test_a_vonage_unicode_text_is_read() -> None:
    hook = VONAGE_SHAPES["form"](vonage_inbound(type="unicode", text="¡Basta! 🛑"))

    assert only_text(vonage_provider(), hook).body == "¡Basta! 🛑"


def test_a_vonage_text_without_its_timestamp_has_no_received_time() -> None:
    hook = VONAGE_SHAPES["form"](vonage_inbound(**{"message-timestamp": "yesterday"}))

    assert only_text(vonage_provider(), hook).received_ms is None


@pytest.mark.parametrize(
    ("params", "words"),
    [
        pytest.param(vonage_inbound(msisdn=""), ["msisdn", "required"], id="empty-msisdn"),
        pytest.param(vonage_inbound(msisdn="1555"), ["msisdn", "'+1555'"], id="bad-msisdn"),
        pytest.param(vonage_inbound(to=None), ["to", "required"], id="no-to"),
        pytest.param(vonage_inbound(messageId=None), ["messageId"], id="no-id"),
        pytest.param(vonage_inbound(text=None), ["text", "required"], id="no-text"),
        pytest.param(
            vonage_inbound(type="binary", text=None, data="0a0b"), ["'binary'"], id="binary"
        ),
    ],
)
def test_a_vonage_inbound_text_with_a_bad_field_is_refused_naming_it(
    params: dict[str, str], words: list[str]
) -> None:
    refused(only_event(vonage_provider(), VONAGE_SHAPES["form"](params)), *words)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"not json", JSON, "not JSON"),
        (b"msisdn=1&msisdn=2", FORM, "given twice"),
        (b"<sms/>", "text/xml", "form-encoded, JSON or a GET query"),
    ],
)
def test_an_unreadable_vonage_request_is_refused_as_a_whole(
    body: bytes, content_type: str, reason: str
) -> None:
    hook = WebhookRequest(url=VONAGE_URL, headers={}, body=body, content_type=content_type)

    assert not vonage_provider().is_inbound(hook)
    with pytest.raises(InvalidWebhook, match=reason):
        vonage_provider().parse_inbound(hook)


def test_only_bandwidth_says_its_callbacks_mix_inbound_texts_and_receipts() -> None:
    assert bandwidth_provider().batches_events
    assert not any(
        p.batches_events for p in (twilio(), telnyx_provider(), plivo_provider(), vonage_provider())
    )
