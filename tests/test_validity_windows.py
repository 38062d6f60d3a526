"""Every provider's send request carries the validity it supports, named as its SDK names it.

Twilio ``ValidityPeriod`` (s), Bandwidth ``expiration`` (RFC 3339), Plivo
``message_expiry`` (s), Vonage ``ttl`` (ms). Telnyx's ``POST /v2/messages``
has none: its SDK's ``MessageSendParams`` (generated from Telnyx's OpenAPI
spec) and its API reference list no validity, expiry or TTL field
(``valid_until`` appears only in its answers), so none is sent.
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import plivo.resources.messages
from bandwidth.models.message_request import MessageRequest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from telnyx.types.message_send_params import MessageSendParams
from twilio.rest.api.v2010.account.message import MessageList
from vonage_sms import SmsMessage

from worker.providers.bandwidth import BandwidthProvider
from worker.providers.base import OutboundText, Provider
from worker.providers.plivo import PlivoProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider
from worker.providers.vonage import VonageProvider

API = "https://api.example.com"
VALIDITY_S = 3600
NOW = datetime(2026, 12, 1, 18, 0, 0, tzinfo=UTC)
TEXT = OutboundText(
    message_id="msg-0001",
    to="+12015550123",
    sender="+12015550100",
    body="Polls close at 8pm",
    status_callback_url="https://hooks.example.com/webhooks/x/status?mid=msg-0001&att=1",
    validity_s=VALIDITY_S,
)
PUBLIC_KEY = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()


async def sent(
    build: Callable[[httpx.AsyncClient], Provider], answer: httpx.Response
) -> httpx.Request:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return answer

    provider = build(httpx.AsyncClient(base_url=API, transport=httpx.MockTransport(handler)))
    try:
        assert (await provider.send(TEXT)).ok
    finally:
        await provider.aclose()
    [request] = captured
    return request


def form_of(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode()))


def json_of(request: httpx.Request) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.content)
    return body


async def test_twilio_sends_validity_period_as_the_sdk_names_it() -> None:
    request = await sent(
        lambda client: TwilioProvider(account_sid="AC" + "0" * 32, auth_token="t", client=client),
        httpx.Response(201, json={"sid": "SM" + "1" * 32}),
    )

    assert "validity_period" in inspect.signature(MessageList.create).parameters
    assert form_of(request)["ValidityPeriod"] == str(VALIDITY_S)


async def test_bandwidth_sends_an_expiration_the_sdk_reads_as_that_time() -> None:
    request = await sent(
        lambda client: BandwidthProvider(
            account_id="9900000",
            application_id="app",
            username="u",
            password="p",
            callback_password="cb",
            client=client,
            clock=lambda: NOW,
        ),
        httpx.Response(202, json={"id": "1589228074636lm4k2je7j7jkl000"}),
    )

    parsed = MessageRequest.from_dict(json_of(request))
    assert parsed is not None
    assert parsed.expiration == NOW + timedelta(seconds=VALIDITY_S)


async def test_plivo_sends_message_expiry_as_the_sdk_names_it() -> None:
    request = await sent(
        lambda client: PlivoProvider(auth_id="MA" + "A" * 18, auth_token="t", client=client),
        httpx.Response(202, json={"message_uuid": ["2a8c1e5a"]}),
    )

    assert (
        "message_expiry" in inspect.signature(plivo.resources.messages.Messages.create).parameters
    )
    assert json_of(request)["message_expiry"] == VALIDITY_S


async def test_vonage_sends_a_ttl_in_ms_the_sdk_accepts() -> None:
    request = await sent(
        lambda client: VonageProvider(
            api_key="abcd1234", api_secret="s", signature_secret="sig", client=client
        ),
        httpx.Response(200, json={"messages": [{"status": "0", "message-id": "0C00"}]}),
    )

    ttl = int(form_of(request)["ttl"])
    assert ttl == VALIDITY_S * 1000
    assert SmsMessage(to="12015550123", from_="12015550100", text="t", ttl=ttl).ttl == ttl


async def test_telnyx_has_no_validity_field_to_send_so_none_is_sent() -> None:
    request = await sent(
        lambda client: TelnyxProvider(api_key="KEY", public_key=PUBLIC_KEY, client=client),
        httpx.Response(200, json={"data": {"id": "40385f64", "to": [{"status": "queued"}]}}),
    )

    def about_validity(name: str) -> bool:
        return any(word in name for word in ("valid", "expir", "ttl"))

    assert not [name for name in MessageSendParams.__annotations__ if about_validity(name)]
    assert not [name for name in json_of(request) if about_validity(name)]
