"""The send job, message states and result categories."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from worker import phone
from worker.errors import InvalidBody, InvalidNumber

DEFAULT_CAMPAIGN = "default"
# The validation context key carrying the region a job's number is read in.
REGION_CONTEXT = "region"
MAX_KEY_CHARS = 200
MAX_METADATA_BYTES = 4096
CAMPAIGN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
# An organisation's name: its opt-out list's key and its [orgs.NAME] section.
ORG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Status(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    # The request may have reached the provider (a timeout or a dropped connection
    # after writing, an ambiguous answer), or a sent text's final receipt never
    # came: final for accounting, and evidence (a receipt, a look-up) still settles it.
    UNCONFIRMED = "unconfirmed"
    HELD = "held"
    SUPPRESSED = "suppressed"
    FAILED = "failed"
    EXPIRED = "expired"
    DEAD = "dead"


FINAL_STATUSES = frozenset(
    {
        Status.DELIVERED,
        Status.UNDELIVERED,
        Status.UNCONFIRMED,
        Status.SUPPRESSED,
        Status.FAILED,
        Status.EXPIRED,
        Status.DEAD,
    }
)


# A sent text's record field: when its final receipt is overdue (epoch ms); the
# text then ends "unconfirmed" (worker.overdue), so "sent" is never where it stays.
RECEIPT_DUE_FIELD = "receipt_due_ms"

# Why a text is held (record field held_for; stats count held texts by it).
HELD_FOR_FIELD = "held_for"
HELD_FOR_QUIET_HOURS = "quiet_hours"
HELD_FOR_CARRIER = "carrier"

# A reply to an inbound text (a STOP's confirmation, a HELP answer) carries these
# record fields: the send path sends it through exactly the provider and number
# the person wrote to, with no failover, and a STOP's confirmation passes the
# opt-out gate that the STOP itself closed.
STOP_REPLY = "stop_confirmation"
HELP_REPLY = "help"
REPLY_TO_FIELD = "reply_to"
REPLY_KIND_FIELD = "reply_kind"
REPLY_PROVIDER_FIELD = "pin_provider"
REPLY_FROM_FIELD = "pin_from"


class Category(StrEnum):
    """What a provider's answer means for the text (DESIGN.md, error categories)."""

    OK = "ok"
    CARRIER_BLOCK = "carrier_block"
    BAD_NUMBER = "bad_number"
    OPTED_OUT = "opted_out"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    AMBIGUOUS = "ambiguous"
    # No answer that says: the request may have reached the provider (a timeout
    # or a connection lost after writing, a gateway's 502/504).
    UNCERTAIN = "uncertain"
    # A 4xx that no retry can fix (bad From number, bad request): fail at once.
    PERMANENT = "permanent"


class SendJob(BaseModel):
    """One text to one person, as a producer hands it to sendq."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    to: str
    body: str
    campaign: str = DEFAULT_CAMPAIGN
    key: str | None = None
    send_before: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("to", mode="before")
    @classmethod
    def _to_e164(cls, value: object, info: ValidationInfo) -> str:
        if value is None:  # JSON null: the same reason as an empty string
            raise ValueError("is empty")
        if not isinstance(value, str | int):
            raise ValueError(f"must be a phone number string, not {type(value).__name__}")
        # The producer says how to read a number without its country code
        # (``default_region``, per campaign); E.164 numbers read the same anywhere.
        region = (info.context or {}).get(REGION_CONTEXT, phone.DEFAULT_REGION)
        try:
            return phone.to_e164(str(value), region)
        except InvalidNumber as exc:
            raise ValueError(exc.reason) from None

    @field_validator("body", mode="before")
    @classmethod
    def _body(cls, value: object) -> str:
        try:
            body, _ = phone.check_body(value)
        except InvalidBody as exc:
            raise ValueError(exc.reason) from None
        return body

    @field_validator("campaign", mode="before")
    @classmethod
    def _campaign(cls, value: object) -> str:
        if value is None or value == "":
            return DEFAULT_CAMPAIGN
        if not isinstance(value, str) or not CAMPAIGN_RE.match(value):
            raise ValueError("must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
        return value

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, value: object) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ValueError(f"must be text, not {type(value).__name__}")
        if len(value) > MAX_KEY_CHARS or any(ord(c) < 32 for c in value):
            raise ValueError(f"must be at most {MAX_KEY_CHARS} printable characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode (it holds a lone surrogate)") from None
        return value

    @field_validator("send_before")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a time zone, e.g. 2026-11-28T18:00:00Z")
        return value

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: object) -> dict[str, Any]:
        import json

        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"must be an object, not {type(value).__name__}")
        try:
            size = len(json.dumps(value, ensure_ascii=False).encode())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must be JSON-serialisable ({exc})") from None
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}")
        return value

    @property
    def segments(self) -> int:
        return phone.count_segments(self.body)

    def send_before_ms(self) -> int | None:
        if self.send_before is None:
            return None
        return int(self.send_before.astimezone(UTC).timestamp() * 1000)


def describe_validation_error(exc: Exception) -> str:
    """One line naming each bad field and its reason, for CLI and API output."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "job"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "is not a known field"
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)
