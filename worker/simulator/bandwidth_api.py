"""Bandwidth's dialect: Messaging API v2 and Basic-auth status callbacks.

Route (mounted by app.py):

* ``POST /api/v2/users/{accountId}/messages``: JSON ``{"applicationId",
  "to": [number], "from", "text", "tag", "expiration"}``, HTTP Basic (API
  username, password). Success ``202`` with the message (``id``, ``owner``,
  ``applicationId``, ``time``, ``segmentCount``, ``direction": "out"``,
  ``to``, ``from``, ``text``, ``tag``). Errors ``{"type", "description",
  "fieldErrors": [{"fieldName", "description"}]}``: 401 ``unauthorized``,
  400 ``request-validation`` (a missing field, an invalid To, a body that is
  not JSON), 429 ``max-message-queue-size-exceeded`` with ``Retry-After``.
  ``Authorization: Bearer <token>`` with a token this simulator issued is let
  in as well as Basic.
* ``POST /api/v1/oauth2/token`` (OAuth2 client credentials, as bandwidth-sdk
  asks for one): HTTP Basic (client id, secret), form body
  ``grant_type=client_credentials``; answers ``{"access_token", "token_type":
  "Bearer", "expires_in": 3600}``, or 401 ``{"error": "invalid_client"}`` /
  400 ``{"error": "unsupported_grant_type"}`` (RFC 6749 section 5.2).

Bandwidth reports carrier codes only in callbacks. A scenario's sync rule
(``mode = "sync"``) therefore answers 400 with the 4-digit code as ``type``
(and Bandwidth's name for it as ``description``): a simulator convention, so
that sendq's classifier (which reads ``type``) sees the category.

Receipts: Bandwidth has no per-message callback; status callbacks go to the
application's callback URL (``SimulatorConfig.callback_urls["bandwidth"]``)
as a JSON array ``[{"type": "message-delivered" | "message-failed", "time",
"description", "to", "errorCode", "carrierName", "message": {"id", "tag",
...}}]``, with the application's callback credentials as HTTP Basic auth
(Bandwidth does not sign callbacks).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
import secrets
import string
import time
from collections.abc import Mapping
from functools import partial
from typing import Any
from urllib.parse import parse_qs

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
from worker.simulator.signing import basic_authorization, basic_credentials

JSON = "application/json"
USER_AGENT = "BandwidthAPI/v2"
MAX_TEXT_CHARS = 2048
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_RANDOM_CHARS = 16
TOKEN_PATH = "/api/v1/oauth2/token"
TOKEN_LIFETIME_S = 3600

RECEIPT_CODES: dict[ErrorCategory, str] = {
    "carrier_block": "4470",  # rejected-spam-detected
    "bad_number": "4720",  # invalid-destination-address
    "opted_out": "4775",  # destination-rejected-due-to-user-opt-out
    "throttled": "4780",  # volume-violation-tmo
    "transient": "5500",  # message-send-failed
    "ambiguous": "4750",  # destination-rejected-message
}
# A cut text's code: 4702 destination-subscriber-unavailable (handset off,
# unreachable, busy; Bandwidth's messaging error reference).
UNREACHABLE_CODE = "4702"

# Bandwidth's names for its codes (dev.bandwidth.com/docs/messaging/errors).
DESCRIPTIONS: dict[str, str] = {
    "4470": "rejected-spam-detected",
    "4702": "destination-subscriber-unavailable",
    "4720": "invalid-destination-address",
    "4750": "destination-rejected-message",
    "4770": "destination-spam-detected",
    "4775": "destination-rejected-due-to-user-opt-out",
    "4780": "volume-violation-tmo",
    "5500": "message-send-failed",
}
FAULT_TYPES: dict[int, str] = {
    500: "internal-server-error",
    502: "bad-gateway",
    503: "service-unavailable",
    504: "gateway-timeout",
}


def new_message_id() -> str:
    """Bandwidth's form: milliseconds since the epoch, then 16 random characters."""
    random = "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in os.urandom(_ID_RANDOM_CHARS))
    return f"{int(time.time() * 1000)}{random}"


def _error(status: int, kind: str, description: str, field: str | None = None) -> Outcome:
    body: dict[str, Any] = {"type": kind, "description": description}
    if field is not None:
        body["fieldErrors"] = [{"fieldName": field, "description": description}]
    return Outcome(status, body)


def _invalid_field(field: str, description: str) -> Outcome:
    return _error(400, "request-validation", description, field)


class BandwidthDialect(Dialect):
    name = "bandwidth"
    send_path = "/api/v2/users/{account_id}/messages"
    receipt_codes = RECEIPT_CODES
    sync_codes = RECEIPT_CODES
    unreachable_code = UNREACHABLE_CODE

    def __init__(
        self,
        *,
        username: str,
        password: str,
        callback_username: str,
        callback_password: str,
        account_id: str | None = None,
        client_id: str = "",
        client_secret: str = "",
    ) -> None:
        self.username = username
        self._password = password.encode()
        self._client_id = client_id
        self._client_secret = client_secret.encode()
        # Issued access token -> when it expires (time.monotonic()).
        self._tokens: dict[str, float] = {}
        self._callback_auth = basic_authorization(callback_username, callback_password)
        # None accepts any account id in the URL (with the right credentials).
        self.account_id = account_id

    def parse(
        self, path_params: Mapping[str, str], headers: Mapping[str, str], raw: bytes
    ) -> SendRequest | Outcome:
        account_id = path_params["account_id"]
        if not self._authorized(headers, account_id):
            outcome = _error(401, "unauthorized", "Authentication failed")
            return dataclasses.replace(outcome, auth_failed=True)
        try:
            payload = json.loads(raw)
        except ValueError:
            return _error(400, "request-validation", "The request body is not valid JSON.")
        if not isinstance(payload, dict):
            return _error(400, "request-validation", "The request body must be a JSON object.")
        to = payload.get("to")
        recipient = to[0] if isinstance(to, list) and to else to
        extra = {
            "applicationId": _string(payload.get("applicationId")),
            "tag": _string(payload.get("tag")),
        }
        return SendRequest(
            account_id,
            _string(recipient),
            _string(payload.get("from")),
            _string(payload.get("text")),
            None,
            extra,
        )

    def _authorized(self, headers: Mapping[str, str], account_id: str) -> bool:
        if self.account_id is not None and account_id != self.account_id:
            return False
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return self._token_valid(token.strip())
        credentials = basic_credentials(authorization)
        if credentials is None:
            return False
        user, password = credentials
        return user == self.username and hmac.compare_digest(password.encode(), self._password)

    def token(self, headers: Mapping[str, str], raw: bytes) -> Outcome:
        """The OAuth2 token endpoint: a bearer token for the right client credentials."""
        credentials = basic_credentials(headers.get("authorization", ""))
        if credentials is None or not self._client_id or not self._client_matches(*credentials):
            outcome = Outcome(401, {"error": "invalid_client"}, {"WWW-Authenticate": "Basic"})
            return dataclasses.replace(outcome, auth_failed=True)
        form = parse_qs(raw.decode("utf-8", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return Outcome(400, {"error": "unsupported_grant_type"})
        now = time.monotonic()
        self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
        value = secrets.token_urlsafe(32)
        self._tokens[value] = now + TOKEN_LIFETIME_S
        body = {"access_token": value, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S}
        return Outcome(200, body)

    def _client_matches(self, client_id: str, secret: str) -> bool:
        same_secret = hmac.compare_digest(secret.encode(), self._client_secret)
        return client_id == self._client_id and same_secret

    def _token_valid(self, token: str) -> bool:
        expires = self._tokens.get(token)
        return expires is not None and expires > time.monotonic()

    def invalid(self, request: SendRequest) -> Outcome | None:
        fields = (
            ("applicationId", request.extra.get("applicationId", "")),
            ("to", request.to),
            ("from", request.sender),
            ("text", request.body),
        )
        for name, value in fields:
            if not value:
                return _invalid_field(name, f"'{name}' must not be empty")
        if len(request.body) > MAX_TEXT_CHARS:
            return _invalid_field("text", f"'text' is longer than {MAX_TEXT_CHARS} characters")
        return None

    def invalid_to(self, request: SendRequest) -> Outcome:
        description = (
            f"'{request.to}' must be replaced with a valid E164 formatted telephone number"
        )
        return _invalid_field("to", description)

    def new_id(self) -> str:
        return new_message_id()

    def accepted(self, text: Text, request: SendRequest, segments: int) -> Outcome:
        return Outcome(202, _message(text, request, segments))

    def rejected(self, code: str) -> Outcome:
        return _error(400, code, DESCRIPTIONS.get(code, "message-rejected"))

    def throttled(self, retry_after_s: int) -> Outcome:
        description = (
            "The SMS queue for your account is full and cannot accept more messages "
            "right now. Please retry later."
        )
        outcome = _error(429, "max-message-queue-size-exceeded", description)
        return Outcome(outcome.status, outcome.body, {"Retry-After": str(retry_after_s)})

    def fault(self, status: int, code: str | None) -> Outcome:
        if status == 429:
            return self.throttled(RETRY_AFTER_S)
        kind = code or FAULT_TYPES.get(status, "internal-server-error")
        return _error(status, kind, f"The service answered HTTP {status}.")

    def receipts(
        self, text: Text, request: SendRequest, url: str, code: str | None, segments: int
    ) -> list[ReceiptBuilder]:
        event: dict[str, Any] = {
            "type": "message-failed" if code else "message-delivered",
            "time": iso_now(),
            "description": DESCRIPTIONS.get(code, "message-failed") if code else "ok",
            "to": text.to,
            "carrierName": carriers.display_name(text.carrier),
            "message": _message(text, request, segments),
        }
        if code:
            event["errorCode"] = int(code) if code.isdigit() else code
        body = json.dumps([event], separators=(",", ":")).encode()
        return [partial(self._signed, url, body)]

    def _signed(self, url: str, body: bytes, attempt: int) -> Outgoing:
        headers = {
            "Content-Type": JSON,
            "User-Agent": USER_AGENT,
            "Authorization": self._callback_auth,
        }
        return Outgoing("POST", url, headers, body)


def _message(text: Text, request: SendRequest, segments: int) -> dict[str, Any]:
    return {
        "id": text.sid,
        "owner": text.sender,
        "applicationId": request.extra.get("applicationId", ""),
        "time": iso_now(),
        "segmentCount": segments,
        "direction": "out",
        "to": [text.to],
        "from": text.sender,
        "media": [],
        "text": text.body,
        "tag": request.extra.get("tag", ""),
        "priority": "default",
    }


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""
