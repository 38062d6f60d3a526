"""Twilio's dialect: Messages (2010-04-01), Lookup v2 and signed status callbacks.

Routes (mounted by app.py):

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: form ``To``,
  ``From``, ``Body``, ``StatusCallback``; HTTP Basic (account SID, auth
  token). Success ``201`` with the Message resource (status ``queued``);
  errors ``{"code", "message", "more_info", "status"}``: 401/20003 bad
  credentials, 400/21604, 21603, 21602 missing To/From/Body, 21617 body too
  long, 21609 bad StatusCallback, 21211 invalid To; 429/20429 with
  ``Retry-After`` over the scenario's MPS.
* ``GET /2010-04-01/Accounts/{AccountSid}/Messages.json``: the Message list,
  filtered by To, From and DateSent (twilio_list).
* ``GET /v2/PhoneNumbers/{number}``: Lookup v2, ``?Fields=line_type_intelligence``
  adds ``carrier_name``.

Receipts: one form POST to ``StatusCallback`` (``MessageSid``,
``MessageStatus`` delivered or undelivered, ``ErrorCode``, ...) signed with
``X-Twilio-Signature`` (signing.twilio_signature, written from Twilio's docs and
checked against twilio-python's RequestValidator, never sendq's adapter); with
a scenario's ``[signing.twilio]`` SharedKey, signed with that key and named in
``X-Twilio-Webhooks-Signature-Settings``.

Shapes follow Twilio's public API reference, so a client written against the
real service parses the simulator's answers unchanged.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hmac
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode

import phonenumbers

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
from worker.simulator.scenario import ErrorCategory, Scenario
from worker.simulator.signing import (
    TWILIO_SIGNATURE_HEADER,
    TWILIO_SIGNATURE_SETTINGS_HEADER,
    basic_credentials,
    twilio_settings_header,
    twilio_signature,
)
from worker.simulator.signing_settings import TwilioSharedKey

API_VERSION = "2010-04-01"
LOOKUP_BASE = "https://lookups.twilio.com"
MAX_BODY_CHARS = 1600  # Twilio's limit on a concatenated body (21617)
FORM = "application/x-www-form-urlencoded"
USER_AGENT = "TwilioProxy/1.1"
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Basic realm="Twilio API"'}

# Representative codes per category (worker/providers/twilio.py classifies each back).
RECEIPT_CODES: dict[ErrorCategory, str] = {
    "carrier_block": "30007",  # message filtered
    "bad_number": "30005",  # unknown destination handset
    "opted_out": "21610",  # unsubscribed recipient
    "throttled": "30022",  # 10DLC rate limit exceeded
    "transient": "30001",  # queue overflow
    "ambiguous": "30008",  # unknown error
}
# A cut text's code: "Unreachable destination handset" (powered off, no signal, or
# "a downstream carrier or mobile network issue"; twilio.com/docs/api/errors/30003).
UNREACHABLE_CODE = "30003"
# At send time Twilio names a bad number 21211; the rest are the same codes.
SYNC_CODES: dict[ErrorCategory, str] = {**RECEIPT_CODES, "bad_number": "21211"}

# Twilio's wording for the codes the simulator can produce.
ERROR_MESSAGES: dict[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21609: "Invalid StatusCallback URL",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30001: "Queue overflow",
    30008: "Unknown error",
    30022: "US A2P 10DLC - Rate Limit Exceeded",
}

_date_cache: tuple[int, str] = (0, "")


def new_sid(prefix: str = "SM") -> str:
    """A Twilio-style SID: two letters and 32 hex digits."""
    return prefix + os.urandom(16).hex()


def rfc2822_now() -> str:
    """The current time as Twilio formats dates; cached per second (it is on the hot path)."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        moment = datetime.fromtimestamp(second, UTC)
        _date_cache = (second, email.utils.format_datetime(moment))  # "..., +0000" like Twilio
    return _date_cache[1]


def error(code: int, status: int, message: str | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "message": message or ERROR_MESSAGES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def rfc2822(ts: float) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(int(ts), UTC))


def message(
    *,
    sid: str,
    account_sid: str,
    to: str,
    sender: str,
    body: str,
    segments: int,
    at: float | None = None,
) -> dict[str, Any]:
    """The Message resource as Twilio returns it from a create (status ``queued``);
    ``at`` (Unix time) dates it, else now."""
    now = rfc2822_now() if at is None else rfc2822(at)
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": now,
        "date_sent": now,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": sender,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": str(segments),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
        "to": to,
        "uri": f"{uri}.json",
    }


def lookup(raw: str, country: str = "US", *, line_type: bool = True) -> dict[str, Any]:
    """A Lookup v2 answer for ``raw`` (E.164, or national in ``country``).

    ``line_type`` adds the line_type_intelligence package, as
    ``Fields=line_type_intelligence`` does on the real API.
    """
    parsed = _parse(raw, country)
    valid = parsed is not None and phonenumbers.is_valid_number(parsed)
    if parsed is None or not valid:
        return _lookup_body(raw, parsed, valid=False, intelligence=None)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if not line_type:
        return _lookup_body(e164, parsed, valid=True, intelligence=None)
    carrier = carriers.carrier_of(e164, phonenumbers.region_code_for_number(parsed))
    mcc, mnc = carriers.network_codes(carrier)
    intelligence = {
        "carrier_name": carriers.display_name(carrier),
        "error_code": None,
        "mobile_country_code": mcc,
        "mobile_network_code": mnc,
        "type": "mobile",
    }
    return _lookup_body(e164, parsed, valid=True, intelligence=intelligence)


def _parse(raw: str, country: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(raw, country)
    except phonenumbers.NumberParseException:
        return None


def _lookup_body(
    number: str,
    parsed: phonenumbers.PhoneNumber | None,
    *,
    valid: bool,
    intelligence: dict[str, Any] | None,
) -> dict[str, Any]:
    region = phonenumbers.region_code_for_number(parsed) if parsed is not None else None
    national = (
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        if parsed is not None and valid
        else None
    )
    return {
        "calling_country_code": str(parsed.country_code) if parsed is not None else None,
        "country_code": region,
        "phone_number": number,
        "national_format": national,
        "valid": valid,
        "validation_errors": [] if valid else ["NOT_A_NUMBER" if parsed is None else "INVALID"],
        "caller_name": None,
        "sim_swap": None,
        "call_forwarding": None,
        "line_status": None,
        "line_type_intelligence": intelligence,
        "identity_match": None,
        "reassigned_number": None,
        "sms_pumping_risk": None,
        "phone_number_quality_score": None,
        "pre_fill": None,
        "url": f"{LOOKUP_BASE}/v2/PhoneNumbers/{number}",
    }


def status_params(
    *, sid: str, account_sid: str, sender: str, to: str, status: str, error_code: str | None
) -> list[tuple[str, str]]:
    """The form fields of a Twilio status callback."""
    params = [
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("MessageStatus", status),
        ("SmsStatus", status),
        ("AccountSid", account_sid),
        ("From", sender),
        ("To", to),
        ("ApiVersion", API_VERSION),
    ]
    if error_code:
        params.append(("ErrorCode", error_code))
    return params


def _error_outcome(code: int, status: int, message: str | None = None) -> Outcome:
    return Outcome(status, error(code, status, message))


class TwilioDialect(Dialect):
    name = "twilio"
    send_path = "/2010-04-01/Accounts/{account_sid}/Messages.json"
    receipt_codes = RECEIPT_CODES
    sync_codes = SYNC_CODES
    unreachable_code = UNREACHABLE_CODE

    def __init__(self, auth_token: str, account_sid: str | None = None) -> None:
        self.auth_token = auth_token
        # None accepts any account SID (with the right auth token).
        self.account_sid = account_sid
        # A scenario's [signing.twilio]: receipts signed with it instead of the token.
        self.shared_key: TwilioSharedKey | None = None

    def use_scenario(self, scenario: Scenario) -> None:
        self.shared_key = scenario.signing.twilio

    def authorized(self, headers: Mapping[str, str], account_sid: str | None) -> bool:
        """HTTP Basic: username the account SID, password the auth token."""
        credentials = basic_credentials(headers.get("authorization", ""))
        if credentials is None:
            return False
        user, password = credentials
        if self.account_sid is not None and user != self.account_sid:
            return False
        if account_sid is not None and user != account_sid:
            return False
        return hmac.compare_digest(password.encode(), self.auth_token.encode())

    def unauthorized(self) -> Outcome:
        return Outcome(401, error(20003, 401), UNAUTHORIZED_HEADERS, auth_failed=True)

    def parse(
        self, path_params: Mapping[str, str], headers: Mapping[str, str], raw: bytes
    ) -> SendRequest | Outcome:
        account_sid = path_params["account_sid"]
        if not self.authorized(headers, account_sid):
            return self.unauthorized()
        form = dict(parse_qsl(raw.decode("utf-8", "replace")))
        return SendRequest(
            account_sid,
            form.get("To", ""),
            form.get("From", ""),
            form.get("Body", ""),
            form.get("StatusCallback") or None,
        )

    def invalid(self, request: SendRequest) -> Outcome | None:
        for value, code in ((request.to, 21604), (request.sender, 21603), (request.body, 21602)):
            if not value:
                return _error_outcome(code, 400)
        if len(request.body) > MAX_BODY_CHARS:
            return _error_outcome(21617, 400)
        callback = request.callback
        if callback and not callback.startswith(("http://", "https://")):
            return _error_outcome(21609, 400)
        return None

    def invalid_to(self, request: SendRequest) -> Outcome:
        message = f"The 'To' number {request.to} is not a valid phone number."
        return _error_outcome(21211, 400, message)

    def new_id(self) -> str:
        return new_sid()

    def accepted(self, text: Text, request: SendRequest, segments: int) -> Outcome:
        resource = message(
            sid=text.sid,
            account_sid=request.account,
            to=text.to,
            sender=text.sender,
            body=text.body,
            segments=segments,
        )
        return Outcome(201, resource)

    def rejected(self, code: str) -> Outcome:
        return _error_outcome(int(code), 400)

    def throttled(self, retry_after_s: int) -> Outcome:
        return Outcome(429, error(20429, 429), {"Retry-After": str(retry_after_s)})

    def fault(self, status: int, code: str | None) -> Outcome:
        outcome = _error_outcome(int(code) if code else 20000 + status, status)
        if status == 429:
            return dataclasses.replace(outcome, headers={"Retry-After": str(RETRY_AFTER_S)})
        return outcome

    def receipts(
        self, text: Text, request: SendRequest, url: str, code: str | None, segments: int
    ) -> list[ReceiptBuilder]:
        params = status_params(
            sid=text.sid,
            account_sid=request.account,
            sender=text.sender,
            to=text.to,
            status="undelivered" if code else "delivered",
            error_code=code,
        )
        return [partial(self._signed, url, params, self.shared_key)]

    def _signed(
        self, url: str, params: list[tuple[str, str]], key: TwilioSharedKey | None, attempt: int
    ) -> Outgoing:
        return signed_form(url, params, self.auth_token, key)


def signed_form(
    url: str, params: list[tuple[str, str]], auth_token: str, key: TwilioSharedKey | None
) -> Outgoing:
    """A form POST of ``params`` to ``url`` as Twilio signs it: with the auth token, or
    with a SharedKey, which the settings header then names."""
    headers = {"Content-Type": FORM, "User-Agent": USER_AGENT}
    if key is None:
        headers[TWILIO_SIGNATURE_HEADER] = twilio_signature(url, params, auth_token)
    else:
        headers[TWILIO_SIGNATURE_HEADER] = twilio_signature(url, params, key.secret, key.algorithm)
        headers[TWILIO_SIGNATURE_SETTINGS_HEADER] = twilio_settings_header(
            key.key_id, key.algorithm
        )
    return Outgoing("POST", url, headers, urlencode(params).encode())
