"""Phone numbers (E.164 via phonenumbers) and SMS segment counting."""

from __future__ import annotations

import math
import re

import phonenumbers

from worker.errors import InvalidBody, InvalidNumber

DEFAULT_REGION = "US"
MAX_SEGMENTS = 10
# Anything longer cannot fit in MAX_SEGMENTS even as GSM-7; reject before counting.
MAX_BODY_CHARS = MAX_SEGMENTS * 153

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension characters cost two septets (escape + char).
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def _us_pattern() -> re.Pattern[str]:
    """phonenumbers' own US metadata: the number types a valid US number may be."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region("US")
    assert meta is not None
    descs = (
        meta.fixed_line,
        meta.mobile,
        meta.toll_free,
        meta.premium_rate,
        meta.shared_cost,
        meta.personal_number,
        meta.voip,
    )
    patterns = [d.national_number_pattern for d in descs if d and d.national_number_pattern]
    assert meta.general_desc is not None
    general = meta.general_desc.national_number_pattern
    # re.ASCII: the metadata's \d means 0-9, as it does in libphonenumber.
    alternatives = "|".join(f"(?:{p})" for p in patterns)
    return re.compile(f"(?=(?:{general})$)(?:{alternatives})", re.ASCII)


_US_VALID = _us_pattern()
# How a spreadsheet saves a long number in a "General" column: 1.20255501E+10
# (or 1,20256E+10 where the decimal mark is a comma). Digits past the mantissa
# are gone; even a full mantissa is refused, since a guess could text a stranger.
SCIENTIFIC_RE = re.compile(r"\s*\+?[0-9]+(?:[.,][0-9]+)?[eE]\+?[0-9]+\s*", re.ASCII)
SCIENTIFIC_HINT = (
    "is in scientific notation, so its digits were lost: a spreadsheet saved the "
    "number as it displays it. In Excel, format the column as Text (Format Cells > "
    "Text) before saving as CSV, or import the file with that column as Text"
)


def to_e164(raw: str, region: str = DEFAULT_REGION) -> str:
    """Parse ``raw`` into E.164, or raise InvalidNumber naming the reason.

    ``region`` (ISO 3166 alpha-2) is how a number without its country code is read:
    the same digits are a Mexican number for "MX" and a New Jersey one for "US".
    A reason shows the number as given: it goes back to its owner (a rejects
    file, the command line); logs mask it in their processor.
    """
    # Fast path for the common case, a US number already in E.164: the same
    # metadata phonenumbers applies, without its general parsing (4x faster).
    # ASCII only: other scripts' digits (Arabic-Indic, full-width) go the slow
    # way, where phonenumbers normalises them, so what is stored is always 0-9.
    if (
        isinstance(raw, str)
        and len(raw) == 12
        and raw.isascii()
        and raw.startswith("+1")
        and raw[2:].isdigit()
        and _US_VALID.fullmatch(raw[2:])
    ):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidNumber("to", "is empty")
    if len(raw) > 64:
        raise InvalidNumber("to", "is longer than any phone number")
    if SCIENTIFIC_RE.fullmatch(raw):
        # Shown as given, as an unparseable value is: the user must find it in the file.
        raise InvalidNumber("to", f"{raw.strip()!r} {SCIENTIFIC_HINT}")
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber("to", f"{raw!r} is not a phone number ({exc._msg})") from exc
    # is_valid_number implies possible; the length check only names the reason.
    if not phonenumbers.is_valid_number(parsed):
        if not phonenumbers.is_possible_number(parsed):
            raise InvalidNumber("to", f"{raw!r} is not a possible number (wrong length)")
        raise InvalidNumber("to", f"{raw!r} is not a valid number for region {region}")
    return (
        f"+{parsed.country_code}{parsed.national_number}"
        if not parsed.italian_leading_zero
        else phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    )


def mask(number: str) -> str:
    """Keep only the last 4 digits: logs never carry a full number."""
    digits = [c for c in number if c.isdigit()]
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + "".join(digits[-4:])


def is_gsm7(body: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in body)


def count_segments(body: str) -> int:
    """Segments a carrier bills for: GSM-7 160/153, otherwise UCS-2 70/67."""
    if is_gsm7(body):
        septets = sum(2 if c in GSM7_EXTENDED else 1 for c in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    # UCS-2 counts UTF-16 code units: astral characters (emoji) take two.
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def check_body(body: object) -> tuple[str, int]:
    """Validate a body and return it with its segment count."""
    if body is None:  # JSON null or a blank cell: the same "is empty" as --body ""
        raise InvalidBody("body", "is empty")
    if not isinstance(body, str):
        raise InvalidBody("body", f"must be text, not {type(body).__name__}")
    if not body.strip():
        raise InvalidBody("body", "is empty")
    if "\x00" in body:
        raise InvalidBody("body", "contains a NUL character")
    if len(body) > MAX_BODY_CHARS:
        raise InvalidBody("body", f"is {len(body)} characters; more than {MAX_SEGMENTS} segments")
    segments = count_segments(body)
    if segments > MAX_SEGMENTS:
        raise InvalidBody("body", f"needs {segments} segments; the limit is {MAX_SEGMENTS}")
    return body, segments
