"""A handset's reply as each provider delivers an inbound text to sendq, signed.

Written from each provider's documentation (and checked against its official
SDK in tests/test_simulator_replies.py), never from sendq's adapters:

* Twilio (twilio.com/docs/messaging/guides/webhook-request): a form POST of
  ``MessageSid``, ``SmsSid``, ``SmsMessageSid``, ``AccountSid``, ``From``,
  ``To``, ``Body``, ``NumMedia``, ``NumSegments``, ``SmsStatus=received``,
  ``ApiVersion``, ``FromCountry``, ``ToCountry``; ``X-Twilio-Signature`` with the
  auth token, or with a scenario's SharedKey and its settings header.
* Telnyx (developers.telnyx.com, callbacks "inbound message"): JSON
  ``{"data": {"event_type": "message.received", "payload": {"direction":
  "inbound", "from": {"phone_number"}, "to": [{"phone_number"}], "text", "id",
  "received_at", ...}}, "meta": {...}}``, ed25519-signed with a fresh timestamp.
* Bandwidth (dev.bandwidth.com/docs/messaging/webhooks): a JSON array of one
  ``message-received`` event (``to``, ``message.from``, ``message.text``,
  ``message.direction = "in"``, ...) with the callback Basic credentials.
* Plivo (plivo.com/docs/messaging/api/message/handling-incoming): a form POST of
  ``From``, ``To`` (digits, no "+"), ``Text``, ``Type=sms``, ``MessageUUID``,
  ``Units``, ``TotalRate``, ``TotalAmount``, ``MessageIntent``, ``PowerpackUUID``,
  V3-signed (both signature headers and the nonce).
* Vonage (developer.vonage.com/messaging/sms/guides/inbound-sms): ``msisdn``,
  ``to`` (no "+"), ``messageId``, ``text``, ``type`` (text or unicode),
  ``keyword``, ``message-timestamp``, and on a signed account ``timestamp``,
  ``nonce`` and ``sig``; by GET (the query) unless the scenario says POST (form)
  or POST-JSON. Concatenated (multi-part) inbound texts are not simulated.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import phonenumbers

from worker.phone import count_segments, is_gsm7
from worker.simulator import carriers
from worker.simulator.config import SimulatorConfig, telnyx_signing_key
from worker.simulator.dialect import Outgoing, ReceiptBuilder
from worker.simulator.plivo_api import new_nonce
from worker.simulator.signing import (
    PLIVO_MA_SIGNATURE_HEADER,
    PLIVO_NONCE_HEADER,
    PLIVO_SIGNATURE_HEADER,
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    basic_authorization,
    plivo_v3_signature,
    telnyx_signature,
    vonage_signature,
)
from worker.simulator.signing_settings import TwilioSharedKey
from worker.simulator.twilio_api import API_VERSION as TWILIO_API_VERSION
from worker.simulator.twilio_api import signed_form

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
# Fixed ids for the simulator's one Telnyx messaging profile and organisation.
TELNYX_PROFILE_ID = "5a1b0000-0000-4000-8000-00000000f11e"
TELNYX_ORGANIZATION_ID = "5a1b0000-0000-4000-8000-0000000000a9"
# Plivo's standard keywords, for MessageIntent (its own matching, not sendq's).
PLIVO_INTENTS = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), "optout"),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "optin"),
    **dict.fromkeys(("HELP", "INFO"), "help"),
}


@dataclass(frozen=True, slots=True)
class Inbound:
    """A text a handset sends back: from the person to the number that texted them."""

    sid: str  # the provider's id for the inbound text
    provider: str
    sender: str  # the handset (E.164)
    to: str  # sendq's number (E.164)
    body: str
    carrier: str  # the handset's
    # The account the answered text was sent from (Twilio's SID, Vonage's key).
    account: str
    # Bandwidth's application id of the answered text.
    application_id: str = ""
    sent_at: float = 0.0  # Unix time the person sent it


class InboundShapes:
    """Builds each provider's signed inbound request, with the simulator's credentials."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._twilio_token = config.auth_token
        self._telnyx_key: Ed25519PrivateKey = telnyx_signing_key(config.telnyx_seed)
        self._bandwidth_auth = basic_authorization(
            config.bandwidth_callback_username, config.bandwidth_callback_password
        )
        self._plivo_token = config.plivo_auth_token
        self._vonage_secret = config.vonage_signature_secret
        self._vonage_sig_method = config.vonage_signature_method

    def builder(
        self,
        text: Inbound,
        url: str,
        *,
        vonage_method: str = "GET",
        twilio_key: TwilioSharedKey | None = None,
    ) -> ReceiptBuilder:
        """A builder of the signed request, made afresh at each attempt (timestamps)."""
        if text.provider == "twilio":
            return partial(self._twilio, text, url, twilio_key)
        if text.provider == "telnyx":
            return partial(self._telnyx, text, url)
        if text.provider == "bandwidth":
            return partial(self._bandwidth, text, url)
        if text.provider == "plivo":
            return partial(self._plivo, text, url)
        if text.provider == "vonage":
            return partial(self._vonage, text, url, vonage_method)
        raise ValueError(f"no inbound shape for provider {text.provider!r}")

    def _twilio(
        self, text: Inbound, url: str, key: TwilioSharedKey | None, attempt: int
    ) -> Outgoing:
        params = [
            ("ToCountry", _country(text.to)),
            ("SmsMessageSid", text.sid),
            ("NumMedia", "0"),
            ("SmsSid", text.sid),
            ("SmsStatus", "received"),
            ("Body", text.body),
            ("FromCountry", _country(text.sender)),
            ("To", text.to),
            ("NumSegments", str(count_segments(text.body))),
            ("MessageSid", text.sid),
            ("AccountSid", text.account),
            ("From", text.sender),
            ("ApiVersion", TWILIO_API_VERSION),
        ]
        return signed_form(url, params, self._twilio_token, key)

    def _telnyx(self, text: Inbound, url: str, attempt: int) -> Outgoing:
        sent = _iso(text.sent_at)
        payload: dict[str, Any] = {
            "record_type": "message",
            "direction": "inbound",
            "id": text.sid,
            "type": "SMS",
            "messaging_profile_id": TELNYX_PROFILE_ID,
            "organization_id": TELNYX_ORGANIZATION_ID,
            "from": {
                "phone_number": text.sender,
                "carrier": carriers.raw_name(text.carrier),
                "line_type": "Wireless",
            },
            "to": [
                {
                    "phone_number": text.to,
                    "status": "webhook_delivered",
                    "carrier": "Telnyx",
                    "line_type": "Wireless",
                }
            ],
            "cc": [],
            "text": text.body,
            "media": [],
            "webhook_url": url,
            "webhook_failover_url": None,
            "encoding": "GSM-7" if is_gsm7(text.body) else "UCS-2",
            "parts": count_segments(text.body),
            "tags": [],
            "cost": None,
            "received_at": sent,
            "sent_at": None,
            "completed_at": None,
            "valid_until": None,
            "errors": [],
        }
        event = {
            "record_type": "event",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"telnyx-inbound:{text.sid}")),
            "event_type": "message.received",
            "occurred_at": sent,
            "payload": payload,
        }
        body = json.dumps(
            {"data": event, "meta": {"attempt": attempt, "delivered_to": url}},
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": JSON,
            "User-Agent": "telnyx-webhooks",
            TELNYX_SIGNATURE_HEADER: telnyx_signature(self._telnyx_key, timestamp, body),
            TELNYX_TIMESTAMP_HEADER: timestamp,
        }
        return Outgoing("POST", url, headers, body)

    def _bandwidth(self, text: Inbound, url: str, attempt: int) -> Outgoing:
        sent = _iso(text.sent_at)
        event = {
            "type": "message-received",
            "time": sent,
            "description": "Incoming message received",
            "to": text.to,
            "carrierName": carriers.display_name(text.carrier),
            "message": {
                "id": text.sid,
                "owner": text.to,
                "applicationId": text.application_id,
                "time": sent,
                "segmentCount": count_segments(text.body),
                "direction": "in",
                "to": [text.to],
                "from": text.sender,
                "text": text.body,
                "media": [],
            },
        }
        headers = {
            "Content-Type": JSON,
            "User-Agent": "BandwidthAPI/v2",
            "Authorization": self._bandwidth_auth,
        }
        return Outgoing("POST", url, headers, json.dumps([event]).encode())

    def _plivo(self, text: Inbound, url: str, attempt: int) -> Outgoing:
        units = count_segments(text.body)
        params = [
            ("From", text.sender.removeprefix("+")),
            ("To", text.to.removeprefix("+")),
            ("Text", text.body),
            ("Type", "sms"),
            ("MessageUUID", text.sid),
            ("Units", str(units)),
            ("TotalRate", "0.00000"),
            ("TotalAmount", "0.00000"),
            ("MessageIntent", PLIVO_INTENTS.get(_keyword(text.body, whole=True), "")),
            ("PowerpackUUID", ""),
        ]
        nonce = new_nonce()
        signed = plivo_v3_signature(url, params, nonce, self._plivo_token)
        headers = {
            "Content-Type": FORM,
            "User-Agent": "PlivoHTTP",
            PLIVO_SIGNATURE_HEADER: signed,
            PLIVO_MA_SIGNATURE_HEADER: signed,  # the account is its own main account
            PLIVO_NONCE_HEADER: nonce,
        }
        return Outgoing("POST", url, headers, urlencode(params).encode())

    def _vonage(self, text: Inbound, url: str, method: str, attempt: int) -> Outgoing:
        now = time.time()
        params = {
            "msisdn": text.sender.removeprefix("+"),
            "to": text.to.removeprefix("+"),
            "messageId": text.sid,
            "text": text.body,
            "type": "text" if is_gsm7(text.body) else "unicode",
            "keyword": _keyword(text.body),
            # When Vonage started pushing it to the webhook, UTC.
            "message-timestamp": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "timestamp": str(int(now)),
            "nonce": str(uuid.uuid4()),
        }
        params["sig"] = vonage_signature(params, self._vonage_secret, self._vonage_sig_method)
        headers = {"User-Agent": "Vonage-Inbound"}
        if method == "GET":
            joiner = "&" if "?" in url else "?"
            return Outgoing("GET", f"{url}{joiner}{urlencode(params)}", headers)
        if method == "POST-JSON":
            headers["Content-Type"] = JSON
            return Outgoing("POST", url, headers, json.dumps(params).encode())
        headers["Content-Type"] = FORM
        return Outgoing("POST", url, headers, urlencode(params).encode())


def _keyword(body: str, *, whole: bool = False) -> str:
    """Vonage's ``keyword``: the first word, upper-cased; ``whole``: the whole body, trimmed,
    upper-cased, without trailing punctuation (for Plivo's keyword match)."""
    if whole:
        return body.strip().rstrip(".!?").strip().upper()
    words = body.split()
    return words[0].upper() if words else ""


def _country(number: str) -> str:
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return ""
    return region or ""


def _iso(at: float) -> str:
    moment = datetime.fromtimestamp(at or time.time(), UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
