"""Telnyx's dialect: Messaging API v2 and ed25519-signed webhooks.

Route (mounted by app.py):

* ``POST /v2/messages``: JSON ``{"from", "to", "text", "webhook_url"}``,
  ``Authorization: Bearer <api key>``. Success ``200 {"data": {"record_type":
  "message", "id": <uuid>, "type": "SMS", "from": {"phone_number", "carrier",
  "line_type"}, "to": [{"phone_number", "status": "queued", "carrier": <raw
  carrier name, e.g. "T-MOBILE USA, INC.">, "line_type": "Wireless"}], "text",
  "parts", "errors": [], ...}}``. Errors ``{"errors": [{"code", "title",
  "detail"}]}``: 401/10009 bad key, 400/10015 body not JSON, 400/10004 a
  missing field, 400/40310 invalid To; 429/10011 with ``Retry-After``,
  ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset``
  (seconds until the window resets, as developers.telnyx.com documents).

Receipts: JSON POSTed to ``webhook_url`` (else the messaging profile's URL,
``SimulatorConfig.callback_urls["telnyx"]``)::

    {"data": {"event_type": "message.finalized", "id": <event uuid>,
              "occurred_at": <ISO 8601>, "record_type": "event",
              "payload": {"id": <message id>, "to": [{"phone_number",
                          "status": "delivered" | "delivery_failed",
                          "carrier", "line_type"}],
                          "errors": [{"code", "title", "detail"}],
                          "from": {...}, "text", "webhook_url", ...}},
     "meta": {"attempt": 1, "delivered_to": <url>}}

with ``telnyx-timestamp`` (Unix seconds) and ``telnyx-signature-ed25519`` =
base64(ed25519 signature of ``f"{timestamp}|"`` + the raw body)
(signing.telnyx_signature), made at each attempt with the key from
``SENDQ_SIM_TELNYX_SEED`` (its public half is ``config.telnyx_public_key()``
and ``GET /sim/keys``). Only the final event is sent; Telnyx's intermediate
``message.sent`` is left out.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from worker.phone import is_gsm7
from worker.simulator import carriers
from worker.simulator.dialect import (
    RETRY_AFTER_S,
    Dialect,
    Outcome,
    Outgoing,
    ReceiptBuilder,
    SendRequest,
    iso_now,
)
from worker.simulator.inbox import Text
from worker.simulator.scenario import ErrorCategory
from worker.simulator.signing import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    telnyx_signature,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

JSON = "application/json"
USER_AGENT = "telnyx-webhooks"
MAX_TEXT_CHARS = 1600
LINE_TYPE = "Wireless"
# Telnyx is the carrier of record for the numbers it hosts.
SENDER_CARRIER = "Telnyx"

RECEIPT_CODES: dict[ErrorCategory, str] = {
    "carrier_block": "40002",  # blocked as spam (temporary)
    "bad_number": "40001",  # not routable
    "opted_out": "40300",  # blocked due to STOP message
    "throttled": "40011",  # too many requests upstream
    "transient": "40006",  # recipient server unavailable
    "ambiguous": "40004",  # rejected by destination
}
# A cut text's code: 40008 "Undeliverable", "carrier did not accept the message"
# (developers.telnyx.com/docs/messaging/messages/error-codes); Telnyx has no
# absent-subscriber code, and 40006 names the carrier's own server being down.
UNREACHABLE_CODE = "40008"

# Telnyx's titles for the codes the simulator produces.
TITLES: dict[str, str] = {
    "10004": "Missing required parameter",
    "10007": "Unexpected error",
    "10009": "Authentication failed",
    "10010": "Authorization failed",
    "10011": "Too many requests",
    "10015": "Bad Request",
    "40001": "Not routable",
    "40002": "Blocked as spam - temporary",
    "40003": "Blocked as spam - permanent",
    "40004": "Rejected by destination",
    "40006": "Recipient server unavailable",
    "40008": "Undeliverable",
    "40011": "Too many requests",
    "40300": "Blocked due to STOP message",
    "40310": "Invalid 'to' address",
}
# A fault's code when the rule names none, by HTTP status.
FAULT_CODES: dict[int, str] = {401: "10009", 403: "10010", 429: "10011"}
DEFAULT_FAULT_CODE = "10007"


def error_body(code: str, detail: str | None = None, pointer: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "title": TITLES.get(code, "Error")}
    error["detail"] = detail or error["title"]
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    return {"errors": [error]}


def _error(
    status: int, code: str, detail: str | None = None, pointer: str | None = None
) -> Outcome:
    return Outcome(status, error_body(code, detail, pointer))


class TelnyxDialect(Dialect):
    name = "telnyx"
    send_path = "/v2/messages"
    receipt_codes = RECEIPT_CODES
    sync_codes = RECEIPT_CODES
    unreachable_code = UNREACHABLE_CODE

    def __init__(self, api_key: str, signing_key: Ed25519PrivateKey) -> None:
        self._expected = f"Bearer {api_key}".encode()
        self._key = signing_key

    def parse(
        self, path_params: Mapping[str, str], headers: Mapping[str, str], raw: bytes
    ) -> SendRequest | Outcome:
        given = headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, self._expected):
            outcome = _error(401, "10009", "The API key is missing, malformed or invalid.")
            return dataclasses.replace(outcome, auth_failed=True)
        try:
            payload = json.loads(raw)
        except ValueError:
            return _error(400, "10015", "The request body is not valid JSON.")
        if not isinstance(payload, dict):
            return _error(400, "10015", "The request body must be a JSON object.")
        return SendRequest(
            # One API key is one account.
            "telnyx",
            _string(_first(payload.get("to"))),
            _string(payload.get("from")),
            _string(payload.get("text")),
            _string(payload.get("webhook_url")) or None,
        )

    def invalid(self, request: SendRequest) -> Outcome | None:
        for value, name in ((request.to, "to"), (request.sender, "from"), (request.body, "text")):
            if not value:
                return _error(400, "10004", f"The '{name}' parameter is required.", f"/{name}")
        if len(request.body) > MAX_TEXT_CHARS:
            return _error(400, "10015", f"text is longer than {MAX_TEXT_CHARS} characters.")
        callback = request.callback
        if callback and not callback.startswith(("http://", "https://")):
            return _error(400, "10015", "webhook_url must be an http(s) URL.", "/webhook_url")
        return None

    def invalid_to(self, request: SendRequest) -> Outcome:
        return _error(400, "40310", f"The 'to' address {request.to} is invalid.", "/to")

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def accepted(self, text: Text, request: SendRequest, segments: int) -> Outcome:
        return Outcome(200, {"data": self._message(text, request, segments, "queued", None)})

    def rejected(self, code: str) -> Outcome:
        return _error(400, code)

    def throttled(self, retry_after_s: int) -> Outcome:
        headers = {
            "Retry-After": str(retry_after_s),
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(retry_after_s),
        }
        detail = "You have exceeded the maximum number of allowed requests."
        return Outcome(429, error_body("10011", detail), headers)

    def fault(self, status: int, code: str | None) -> Outcome:
        if status == 429:
            return self.throttled(RETRY_AFTER_S)
        return _error(status, code or FAULT_CODES.get(status, DEFAULT_FAULT_CODE))

    def receipts(
        self, text: Text, request: SendRequest, url: str, code: str | None, segments: int
    ) -> list[ReceiptBuilder]:
        message = self._message(text, request, segments, "delivered", code)
        message["webhook_url"] = request.callback or url
        event = {
            "event_type": "message.finalized",
            "id": str(uuid.uuid4()),
            "occurred_at": iso_now(),
            "record_type": "event",
            "payload": message,
        }
        return [partial(self._signed, url, event)]

    def _message(
        self, text: Text, request: SendRequest, segments: int, status: str, code: str | None
    ) -> dict[str, Any]:
        now = iso_now()
        recipient = {
            "phone_number": text.to,
            "status": "delivery_failed" if code else status,
            "carrier": carriers.raw_name(text.carrier),
            "line_type": LINE_TYPE,
        }
        final = status != "queued"
        return {
            "record_type": "message",
            "direction": "outbound",
            "id": text.sid,
            "type": "SMS",
            "from": {
                "phone_number": text.sender,
                "carrier": SENDER_CARRIER,
                "line_type": LINE_TYPE,
            },
            "to": [recipient],
            "cc": [],
            "text": text.body,
            "media": [],
            "encoding": "GSM-7" if is_gsm7(text.body) else "UCS-2",
            "parts": segments,
            "tags": [],
            "webhook_url": request.callback,
            "webhook_failover_url": None,
            "received_at": now,
            "sent_at": now if final else None,
            "completed_at": now if final else None,
            "errors": error_body(code)["errors"] if code else [],
        }

    def _signed(self, url: str, event: dict[str, Any], attempt: int) -> Outgoing:
        body = json.dumps(
            {"data": event, "meta": {"attempt": attempt, "delivered_to": url}},
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": JSON,
            "User-Agent": USER_AGENT,
            TELNYX_SIGNATURE_HEADER: telnyx_signature(self._key, timestamp, body),
            TELNYX_TIMESTAMP_HEADER: timestamp,
        }
        return Outgoing("POST", url, headers, body)


def _first(value: object) -> object:
    """``to`` is a string; a list (as for group texts) gives its first entry."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""
