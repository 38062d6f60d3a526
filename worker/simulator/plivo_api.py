"""Plivo's dialect: the Message API and V3-signed status callbacks.

Route (mounted by app.py):

* ``POST /v1/Account/{auth_id}/Message/``: JSON ``{"src", "dst", "text",
  "type", "url", "method", ...}``, HTTP Basic (auth ID, auth token). Success
  ``202 {"api_id", "message": "message(s) queued", "message_uuid": [uuid]}``.
  Errors ``{"api_id", "error": "<sentence>"}`` with an HTTP status and no
  numeric code: 401 bad credentials, 400 a missing field, an invalid ``dst``
  or a body that is not JSON, 429 over the scenario's MPS (with
  ``Retry-After``).

Plivo's send API answers in words, not codes. A scenario's sync rule
(``mode = "sync"``) answers 400 with the rule's code in the sentence, which
sendq reads as permanent, except ``transient``, answered as Plivo's
"insufficient credit" (sendq's adapter maps that phrase to code 900).

Receipts: a form POST to the send's ``url`` with ``MessageUUID``, ``Status``
(delivered, or undelivered with a Plivo ``ErrorCode``), ``From``, ``To``,
``Units``, ..., signed with ``X-Plivo-Signature-V3`` and
``X-Plivo-Signature-Ma-V3`` over the URL, the sorted form and a fresh
``X-Plivo-Signature-V3-Nonce`` (signing.plivo_v3_signature, written from
plivo-python's signature_v3 and checked against its validate_v3_signature,
never sendq's adapter). Plivo has no throttling code in receipts:
what exceeding its throughput looks like there is a text expiring in its
queue (420), which is what ``error = "throttled"`` produces.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
import uuid
from collections.abc import Mapping
from functools import partial
from urllib.parse import urlencode

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
    PLIVO_MA_SIGNATURE_HEADER,
    PLIVO_NONCE_HEADER,
    PLIVO_SIGNATURE_HEADER,
    basic_credentials,
    plivo_v3_signature,
)

FORM = "application/x-www-form-urlencoded"
USER_AGENT = "PlivoHTTP"
MAX_TEXT_CHARS = 1600
NONCE_DIGITS = 20

RECEIPT_CODES: dict[ErrorCategory, str] = {
    "carrier_block": "30",  # spam detected by carrier filters
    "bad_number": "50",  # invalid destination
    "opted_out": "200",  # blocked by STOP from the destination
    "throttled": "420",  # expired in Plivo's queue: no throttling code exists
    "transient": "20",  # network error at the carrier
    "ambiguous": "1000",  # unknown error
}
# A cut text's code: 80 "destination temporarily unavailable" (handset off or out of
# coverage; plivo.com/docs/messaging/troubleshooting/error-codes).
UNREACHABLE_CODE = "80"
INSUFFICIENT_CREDIT_CODE = "900"
SYNC_CODES: dict[ErrorCategory, str] = {**RECEIPT_CODES, "transient": INSUFFICIENT_CREDIT_CODE}
FAULT_ERRORS: dict[int, str] = {
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


def _error(status: int, error: str) -> Outcome:
    return Outcome(status, {"api_id": str(uuid.uuid4()), "error": error})


def new_nonce() -> str:
    return str(int.from_bytes(os.urandom(9), "big")).zfill(NONCE_DIGITS)[-NONCE_DIGITS:]


class PlivoDialect(Dialect):
    name = "plivo"
    send_path = "/v1/Account/{auth_id}/Message/"
    receipt_codes = RECEIPT_CODES
    sync_codes = SYNC_CODES
    unreachable_code = UNREACHABLE_CODE

    def __init__(self, auth_token: str, auth_id: str | None = None) -> None:
        self._auth_token = auth_token
        # None accepts any auth ID in the URL (with the right auth token).
        self.auth_id = auth_id

    def parse(
        self, path_params: Mapping[str, str], headers: Mapping[str, str], raw: bytes
    ) -> SendRequest | Outcome:
        auth_id = path_params["auth_id"]
        if not self._authorized(headers, auth_id):
            return dataclasses.replace(_error(401, "authentication failed"), auth_failed=True)
        try:
            payload = json.loads(raw)
        except ValueError:
            return _error(400, "the request body is not valid JSON")
        if not isinstance(payload, dict):
            return _error(400, "the request body must be a JSON object")
        return SendRequest(
            auth_id,
            _string(payload.get("dst")),
            _string(payload.get("src")),
            _string(payload.get("text")),
            _string(payload.get("url")) or None,
            {"method": _string(payload.get("method")).upper() or "POST"},
        )

    def _authorized(self, headers: Mapping[str, str], auth_id: str) -> bool:
        credentials = basic_credentials(headers.get("authorization", ""))
        if credentials is None:
            return False
        user, password = credentials
        if user != auth_id or (self.auth_id is not None and user != self.auth_id):
            return False
        return hmac.compare_digest(password.encode(), self._auth_token.encode())

    def invalid(self, request: SendRequest) -> Outcome | None:
        for value, name in ((request.sender, "src"), (request.to, "dst"), (request.body, "text")):
            if not value:
                return _error(400, f"{name} is a required parameter")
        if len(request.body) > MAX_TEXT_CHARS:
            return _error(400, f"text is longer than {MAX_TEXT_CHARS} characters")
        callback = request.callback
        if callback and not callback.startswith(("http://", "https://")):
            return _error(400, "url must be a valid http(s) URL")
        if request.extra.get("method") != "POST":
            # sendq asks for POST; a GET callback is not simulated.
            return _error(400, "method must be POST")
        return None

    def invalid_to(self, request: SendRequest) -> Outcome:
        return _error(400, f"invalid dst parameter: {request.to} is not a valid number")

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def accepted(self, text: Text, request: SendRequest, segments: int) -> Outcome:
        body = {
            "api_id": str(uuid.uuid4()),
            "message": "message(s) queued",
            "message_uuid": [text.sid],
        }
        return Outcome(202, body)

    def rejected(self, code: str) -> Outcome:
        if code == INSUFFICIENT_CREDIT_CODE:
            return _error(400, "insufficient credit to send the message")
        return _error(400, f"message rejected (error code {code})")

    def throttled(self, retry_after_s: int) -> Outcome:
        outcome = _error(429, "too many requests")
        return Outcome(429, outcome.body, {"Retry-After": str(retry_after_s)})

    def fault(self, status: int, code: str | None) -> Outcome:
        if status == 429:
            return self.throttled(RETRY_AFTER_S)
        error = FAULT_ERRORS.get(status, f"HTTP {status}")
        return _error(status, f"{error} (error code {code})" if code else error)

    def receipts(
        self, text: Text, request: SendRequest, url: str, code: str | None, segments: int
    ) -> list[ReceiptBuilder]:
        params = [
            ("From", text.sender.removeprefix("+")),
            ("To", text.to.removeprefix("+")),
            ("MessageUUID", text.sid),
            ("ParentMessageUUID", text.sid),
            ("Status", "undelivered" if code else "delivered"),
            ("ErrorCode", code or "000"),
            ("Units", str(segments)),
            ("TotalRate", "0.00500"),
            ("TotalAmount", f"{0.005 * segments:.5f}"),
            ("MessageTime", iso_now()),
        ]
        return [partial(self._signed, url, params)]

    def _signed(self, url: str, params: list[tuple[str, str]], attempt: int) -> Outgoing:
        nonce = new_nonce()
        signed = plivo_v3_signature(url, params, nonce, self._auth_token)
        headers = {
            "Content-Type": FORM,
            "User-Agent": USER_AGENT,
            PLIVO_SIGNATURE_HEADER: signed,
            # The simulator's account is its own main account: one token signs both.
            PLIVO_MA_SIGNATURE_HEADER: signed,
            PLIVO_NONCE_HEADER: nonce,
        }
        return Outgoing("POST", url, headers, urlencode(params).encode())


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""
