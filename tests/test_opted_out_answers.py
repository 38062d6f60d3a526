"""Each provider's "this person opted out" answer is Category.OPTED_OUT, wherever it comes.

Twilio 21610 and Telnyx 40300 come in the send answer and in receipts; Vonage
says it as send status 7 ("number barred") or receipt err-code 9 (its
opt-out code: developer.vonage.com/opt-out-assist, "Messaging Opted-out
Numbers"). Bandwidth 4775 and Plivo 200 come only in receipts: both providers
take the text at send time and fail it afterwards (Plivo: support.plivo.com,
"Can I reply to customers who have opted out?").
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from worker.models import Category, Status
from worker.providers.bandwidth import BandwidthProvider
from worker.providers.base import WebhookRequest
from worker.providers.plivo import PlivoProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider
from worker.providers.vonage import VonageProvider

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
PUBLIC_KEY = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()


def offline() -> httpx.AsyncClient:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("this test must not send anything")

    return httpx.AsyncClient(transport=httpx.MockTransport(unreachable))


def form(url: str, params: dict[str, str]) -> WebhookRequest:
    return WebhookRequest(url=url, headers={}, body=urlencode(params).encode(), content_type=FORM)


def json_request(url: str, body: Any) -> WebhookRequest:
    return WebhookRequest(url=url, headers={}, body=json.dumps(body).encode(), content_type=JSON)


def twilio() -> TwilioProvider:
    return TwilioProvider(account_sid="AC" + "0" * 32, auth_token="t" * 32, client=offline())


def telnyx() -> TelnyxProvider:
    return TelnyxProvider(api_key="KEY", public_key=PUBLIC_KEY, client=offline())


def bandwidth() -> BandwidthProvider:
    return BandwidthProvider(
        account_id="9900000",
        application_id="app",
        username="u",
        password="p",
        callback_username="cb",
        callback_password="cbp",
        client=offline(),
    )


def plivo() -> PlivoProvider:
    return PlivoProvider(auth_id="MA" + "A" * 18, auth_token="token", client=offline())


def vonage() -> VonageProvider:
    return VonageProvider(
        api_key="abcd1234", api_secret="secret", signature_secret="sig", client=offline()
    )


# -- Twilio 21610 ------------------------------------------------------------------------


def test_twilio_21610_in_the_send_answer_is_opted_out() -> None:
    answer = {
        "code": 21610,
        "message": "Attempt to send to unsubscribed recipient",
        "more_info": "https://www.twilio.com/docs/errors/21610",
        "status": 400,
    }
    result = twilio().result(httpx.Response(400, json=answer))

    assert (result.category, result.error_code) == (Category.OPTED_OUT, "21610")


@pytest.mark.parametrize("status", ["undelivered", "failed"])
def test_twilio_21610_in_a_receipt_is_opted_out(status: str) -> None:
    receipt = twilio().parse_receipt(
        form(
            "https://hooks.example.com/webhooks/twilio/status?mid=msg-1&att=1",
            {"MessageSid": "SM" + "1" * 32, "MessageStatus": status, "ErrorCode": "21610"},
        )
    )

    assert (receipt.status, receipt.category) == (Status.UNDELIVERED.value, Category.OPTED_OUT)


# -- Telnyx 40300 ------------------------------------------------------------------------


def test_telnyx_40300_in_the_send_answer_is_opted_out() -> None:
    # developers.telnyx.com/api/errors/40300: answered 409 to the send.
    answer = {"errors": [{"code": "40300", "title": "Blocked due to STOP message"}]}
    result = telnyx().result(httpx.Response(409, json=answer))

    assert (result.category, result.error_code) == (Category.OPTED_OUT, "40300")


def test_telnyx_40300_in_a_receipt_is_opted_out() -> None:
    payload = {
        "id": "b0c3fa2e-8d1a-4b0c-9a7e-2f1c8a55d001",
        "to": [{"phone_number": "+12015550123", "status": "delivery_failed"}],
        "errors": [{"code": "40300", "title": "Blocked due to STOP message"}],
    }
    body = {"data": {"event_type": "message.finalized", "payload": payload}}
    receipt = telnyx().parse_receipt(json_request("https://hooks.example.com/t", body))

    assert (receipt.error_code, receipt.category) == ("40300", Category.OPTED_OUT)


# -- Bandwidth 4775 ----------------------------------------------------------------------


def test_bandwidth_4775_in_a_receipt_is_opted_out() -> None:
    event = {
        "type": "message-failed",
        "time": "2026-12-01T18:10:01.000Z",
        "description": "destination-rejected-due-to-user-opt-out",
        "to": "+12015550123",
        "errorCode": 4775,
        "message": {"id": "1589228074636lm4k2je7j7jkl000", "tag": "msg-1"},
    }
    receipt = bandwidth().parse_receipt(json_request("https://hooks.example.com/b", [event]))

    assert (receipt.error_code, receipt.category) == ("4775", Category.OPTED_OUT)


# -- Plivo 200 ---------------------------------------------------------------------------


def test_plivo_200_in_a_receipt_is_opted_out() -> None:
    receipt = plivo().parse_receipt(
        form(
            "https://hooks.example.com/webhooks/plivo/status?mid=msg-1",
            {"MessageUUID": "2a8c1e5a", "Status": "failed", "ErrorCode": "200"},
        )
    )

    assert (receipt.error_code, receipt.category) == ("200", Category.OPTED_OUT)


# -- Vonage: send status 7, receipt err-code 9 ----------------------------------------------


def test_vonage_status_7_number_barred_in_the_send_answer_is_opted_out() -> None:
    answer = {
        "message-count": "1",
        "messages": [{"status": "7", "error-text": "Number barred."}],
    }
    result = vonage().result(httpx.Response(200, json=answer))

    assert (result.category, result.error_code) == (Category.OPTED_OUT, "sms-7")


def test_vonage_err_code_9_in_a_receipt_is_opted_out() -> None:
    # The delivery receipt Vonage's Opt-Out Assist guide shows for an opted-out number.
    dlr = {
        "msisdn": "447911123456",
        "to": "AcmeInc",
        "network-code": "12345",
        "messageId": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        "price": "0.00000000",
        "status": "failed",
        "scts": "2001011400",
        "err-code": "9",
        "api-key": "abcd1234",
        "message-timestamp": "2020-01-01 12:00:00",
    }
    receipt = vonage().parse_receipt(json_request("https://hooks.example.com/v", dlr))

    assert (receipt.error_code, receipt.category) == ("dlr-9", Category.OPTED_OUT)
