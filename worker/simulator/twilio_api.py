"""The JSON Twilio answers with: Message resources, errors and Lookup v2 results.

Shapes follow Twilio's public API reference (Messages, 2010-04-01; Lookup v2
with ``Fields=line_type_intelligence``), so a client written against the
real service parses the simulator's answers unchanged.
"""

from __future__ import annotations

import email.utils
import os
import time
from datetime import UTC, datetime
from typing import Any

import phonenumbers

from worker.simulator import carriers

API_VERSION = "2010-04-01"
LOOKUP_BASE = "https://lookups.twilio.com"

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


def message(
    *, sid: str, account_sid: str, to: str, sender: str, body: str, segments: int
) -> dict[str, Any]:
    """The Message resource as Twilio returns it from a create (status ``queued``)."""
    now = rfc2822_now()
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
