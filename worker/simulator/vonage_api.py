"""Vonage's dialect: the SMS API (``/sms/json``) and signed delivery receipts.

Route (mounted by app.py):

* ``POST /sms/json``: form (or JSON) ``to``, ``from`` (E.164 without "+"),
  ``text``, ``type``, ``callback``, ``client-ref``, ``ttl``. Credentials by
  any of Vonage's three ways: HTTP Basic (API key, API secret); ``api_key``
  and ``api_secret`` parameters; or a signed request, ``api_key``,
  ``timestamp`` (within 5 minutes) and ``sig`` made with the signature secret
  and method. The answer is HTTP 200 even for errors:
  ``{"message-count": "N", "messages": [{"to", "message-id", "status": "0",
  "remaining-balance", "message-price", "network", "client-ref"}, ...]}``, one
  entry per SMS part; a refusal is one entry ``{"status": "N", "error-text"}``:
  2 a missing parameter or credentials, 4 bad credentials, 14 a bad
  signature, 32 both a signature and a secret, 12 a text too long, 23 a
  callback that is not an http(s) URL, 6 an invalid ``to`` ("unrecognised
  number prefix"). Over the scenario's MPS the
  answer is HTTP 429 with status 1 ("Throttled") and ``Retry-After``.

The send API has no codes for a carrier block or an ambiguous refusal (the
carrier answers later, in the DLR), so a sync rule for those categories
answers status 3 (invalid parameters), which sendq reads as permanent.

Receipts (DLRs): one per SMS part, to the send's ``callback`` (else the
account's URL, ``SimulatorConfig.callback_urls["vonage"]``), with
``messageId``, ``msisdn``, ``to``, ``network-code``, ``price``, ``status``
(delivered, or failed with a non-zero ``err-code``), ``scts``, ``err-code``,
``api-key``, ``client-ref``, ``message-timestamp``, ``timestamp``, ``nonce``
and ``sig`` over all the others (signing.vonage_signature, written from
Vonage's "Signing Messages" page and checked against vonage-http-client, with
the account's signature method). Sent as the account is set
(``SimulatorConfig.vonage_dlr_method``): a form POST by default, a JSON POST
("POST-JSON") or a GET with the parameters in the query. The DLR ``err-code``
has no throttling code either; ``error = "throttled"`` gives 8 (network
error, "retry"), as ``transient`` does.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode

from worker.simulator import carriers
from worker.simulator.dialect import (
    RETRY_AFTER_S,
    Dialect,
    Outcome,
    Outgoing,
    ReceiptBuilder,
    SendRequest,
)
from worker.simulator.inbox import Text
from worker.simulator.scenario import ErrorCategory
from worker.simulator.signing import (
    VONAGE_SIGNATURE_METHODS,
    basic_credentials,
    vonage_signature,
    vonage_signature_valid,
)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
USER_AGENT = "Vonage-DLR"
MAX_TEXT_CHARS = 3200
# Vonage refuses a signed request whose timestamp is further from now than this.
SIGNED_REQUEST_TOLERANCE_S = 300
DLR_METHODS = ("POST", "POST-JSON", "GET")
PRICE = "0.00750000"
BALANCE = "100.00000000"

# DLR err-codes (api.support.vonage.com, "SMS Delivery Error Codes").
RECEIPT_CODES: dict[ErrorCategory, str] = {
    "carrier_block": "6",  # anti-spam rejection
    "bad_number": "3",  # absent subscriber, permanent
    "opted_out": "9",  # illegal number: the recipient opted out
    "throttled": "8",  # network error: no throttling code exists in DLRs
    "transient": "8",  # network error
    "ambiguous": "1",  # unknown
}
# A cut text's DLR err-code: 2 "absent subscriber, temporary" (out of coverage or
# switched off; Vonage's DLR error codes).
UNREACHABLE_CODE = "2"
# Send API statuses (developer.vonage.com/api-errors/sms).
SYNC_CODES: dict[ErrorCategory, str] = {
    "carrier_block": "3",  # no such status: invalid parameters
    "bad_number": "6",  # invalid message: unrecognised number prefix
    "opted_out": "7",  # number barred
    "throttled": "1",  # throttled
    "transient": "5",  # internal error
    "ambiguous": "3",  # no such status: invalid parameters
}
# Refusals of the request's credentials (2 only when they were missing).
AUTH_STATUSES = frozenset({"4", "14", "32"})
STATUS_TEXTS: dict[str, str] = {
    "1": "Throttled",
    "2": "Missing Parameters",
    "3": "Invalid Parameters",
    "4": "Bad Credentials",
    "5": "Internal Error",
    "6": "Invalid Message",
    "7": "Number Barred",
    "12": "Message Too Long",
    "14": "Invalid Signature",
    "23": "Invalid Callback Url",
    "32": "Signature And API Secret Disallowed",
}


def refusal(status: str, detail: str | None = None, http_status: int = 200) -> Outcome:
    text = STATUS_TEXTS.get(status, "Error")
    part = {"status": status, "error-text": f"{text}: {detail}" if detail else text}
    body = {"message-count": "1", "messages": [part]}
    return Outcome(http_status, body, auth_failed=status in AUTH_STATUSES)


def _missing_credentials(detail: str) -> Outcome:
    return dataclasses.replace(refusal("2", detail), auth_failed=True)


def part_ids(first: str, parts: int) -> list[str]:
    """Each part's message-id: the first part's, counted up in hex."""
    start = int(first, 16)
    return [f"{start + i:016X}" for i in range(parts)]


def _e164(value: str) -> str:
    """Vonage numbers have no "+"; an alphanumeric sender ID stays as it is."""
    return "+" + value if value.isascii() and value.isdigit() else value


class VonageDialect(Dialect):
    name = "vonage"
    send_path = "/sms/json"
    receipt_codes = RECEIPT_CODES
    sync_codes = SYNC_CODES
    unreachable_code = UNREACHABLE_CODE

    def __init__(
        self,
        *,
        api_secret: str,
        signature_secret: str,
        signature_method: str = "md5hash",
        api_key: str | None = None,
        dlr_method: str = "POST",
    ) -> None:
        if signature_method not in VONAGE_SIGNATURE_METHODS:
            raise ValueError(f"Vonage signature method must be one of {VONAGE_SIGNATURE_METHODS}")
        if dlr_method not in DLR_METHODS:
            raise ValueError(f"Vonage DLR method must be one of {DLR_METHODS}")
        self._api_secret = api_secret.encode()
        self._signature_secret = signature_secret
        self._method = signature_method
        # None accepts any API key (with the right secret or signature).
        self.api_key = api_key
        self.dlr_method = dlr_method

    # -- requests ----------------------------------------------------------------------

    def parse(
        self, path_params: Mapping[str, str], headers: Mapping[str, str], raw: bytes
    ) -> SendRequest | Outcome:
        params = _params(headers.get("content-type", ""), raw)
        if params is None:
            return refusal("2", "the body is neither a form nor a JSON object")
        key_or_refusal = self._authenticate(headers, params)
        if isinstance(key_or_refusal, Outcome):
            return key_or_refusal
        extra = {"client-ref": params.get("client-ref", "")}
        return SendRequest(
            key_or_refusal,
            _e164(params.get("to", "").strip()),
            _e164(params.get("from", "").strip()),
            params.get("text", ""),
            params.get("callback") or None,
            extra,
        )

    def _authenticate(self, headers: Mapping[str, str], params: dict[str, str]) -> str | Outcome:
        """The API key of a request with valid credentials, else Vonage's refusal."""
        basic = basic_credentials(headers.get("authorization", ""))
        if "sig" in params:
            if "api_secret" in params or basic is not None:
                return refusal("32")
            return self._check_signed(params)
        key, secret = (
            basic if basic is not None else (params.get("api_key"), params.get("api_secret"))
        )
        if not key or not secret:
            return _missing_credentials("api_key and api_secret are required")
        if self.api_key is not None and key != self.api_key:
            return refusal("4")
        if not hmac.compare_digest(secret.encode(), self._api_secret):
            return refusal("4")
        return key

    def _check_signed(self, params: dict[str, str]) -> str | Outcome:
        key = params.get("api_key", "")
        timestamp = params.get("timestamp", "")
        if not key or not timestamp.isdigit():
            return _missing_credentials("a signed request needs api_key and timestamp")
        if self.api_key is not None and key != self.api_key:
            return refusal("4")
        if abs(time.time() - int(timestamp)) > SIGNED_REQUEST_TOLERANCE_S:
            return refusal("14", "the timestamp is too far from now")
        if not vonage_signature_valid(params, self._signature_secret, self._method):
            return refusal("14")
        return key

    def invalid(self, request: SendRequest) -> Outcome | None:
        for value, name in ((request.to, "to"), (request.sender, "from"), (request.body, "text")):
            if not value:
                return refusal("2", f"{name} is required")
        if len(request.body) > MAX_TEXT_CHARS:
            return refusal("12")
        callback = request.callback
        if callback and not callback.startswith(("http://", "https://")):
            return refusal("23", "callback must be an http(s) URL")
        return None

    def invalid_to(self, request: SendRequest) -> Outcome:
        return refusal("6", "unrecognised number prefix")

    def new_id(self) -> str:
        return os.urandom(8).hex().upper()

    # -- answers ----------------------------------------------------------------------

    def accepted(self, text: Text, request: SendRequest, segments: int) -> Outcome:
        mcc, mnc = carriers.network_codes(text.carrier)
        ref = request.extra.get("client-ref")
        messages = []
        for message_id in part_ids(text.sid, segments):
            part = {
                "to": text.to.removeprefix("+"),
                "message-id": message_id,
                "status": "0",
                "remaining-balance": BALANCE,
                "message-price": PRICE,
                "network": mcc + mnc,
            }
            if ref:
                part["client-ref"] = ref
            messages.append(part)
        return Outcome(200, {"message-count": str(segments), "messages": messages})

    def rejected(self, code: str) -> Outcome:
        return refusal(code)

    def throttled(self, retry_after_s: int) -> Outcome:
        outcome = refusal("1", "sending faster than the account's limit", 429)
        return Outcome(429, outcome.body, {"Retry-After": str(retry_after_s)})

    def fault(self, status: int, code: str | None) -> Outcome:
        if status == 429:
            return self.throttled(RETRY_AFTER_S)
        return refusal(code or "5", None, status)

    # -- receipts ---------------------------------------------------------------------------

    def receipts(
        self, text: Text, request: SendRequest, url: str, code: str | None, segments: int
    ) -> list[ReceiptBuilder]:
        mcc, mnc = carriers.network_codes(text.carrier)
        now = datetime.now(UTC)
        common = {
            "msisdn": text.to.removeprefix("+"),
            "to": text.sender.removeprefix("+"),
            "network-code": mcc + mnc,
            "price": PRICE,
            "status": "failed" if code else "delivered",
            "scts": now.strftime("%y%m%d%H%M"),
            "err-code": code or "0",
            "api-key": request.account,
            "message-timestamp": now.strftime("%Y-%m-%d %H:%M:%S"),
        }
        ref = request.extra.get("client-ref")
        if ref:
            common["client-ref"] = ref
        return [
            partial(self._signed, url, {**common, "messageId": message_id})
            for message_id in part_ids(text.sid, segments)
        ]

    def _signed(self, url: str, params: dict[str, str], attempt: int) -> Outgoing:
        params = {**params, "timestamp": str(int(time.time())), "nonce": str(uuid.uuid4())}
        params["sig"] = vonage_signature(params, self._signature_secret, self._method)
        headers = {"User-Agent": USER_AGENT}
        if self.dlr_method == "GET":
            joiner = "&" if "?" in url else "?"
            return Outgoing("GET", f"{url}{joiner}{urlencode(params)}", headers)
        if self.dlr_method == "POST-JSON":
            headers["Content-Type"] = JSON
            return Outgoing("POST", url, headers, json.dumps(params).encode())
        headers["Content-Type"] = FORM
        return Outgoing("POST", url, headers, urlencode(params).encode())


def _params(content_type: str, raw: bytes) -> dict[str, str] | None:
    """The request's parameters from a form or a JSON object; None if neither."""
    if JSON in content_type.lower():
        try:
            payload: Any = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(payload, dict):
            return None
        return {str(k): str(v) for k, v in payload.items() if v is not None}
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
