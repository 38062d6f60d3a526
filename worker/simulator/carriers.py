"""The simulator's carriers: which carrier serves a number, by a fixed rule.

Real carrier data comes from number-portability databases; the simulator
needs something deterministic that a test or a benchmark can reason about,
so it decides by the first digit of the *line number* (the last four digits)
of a US number:

======================  ===========  ==============================  ==========
line number             carrier      display name (Lookup v2)        MCC / MNC
======================  ===========  ==============================  ==========
``0000``-``2999``       ``att``      AT&T Wireless                   310 / 410
``3000``-``5999``       ``tmobile``  T-Mobile USA, Inc.              310 / 260
``6000``-``8999``       ``verizon``  Verizon Wireless                311 / 480
``9000``-``9999``       ``unknown``  Pinnacle Regional Wireless      311 / 990
======================  ===========  ==============================  ==========

Telnyx names carriers as number-portability data spells them, so its send
answers and receipts carry a *raw* name (``raw_name``): "AT&T Wireless",
"T-MOBILE USA, INC.", "Cellco Partnership dba Verizon Wireless" and
"PINNACLE REGIONAL WIRELESS". sendq's worker/carriers.py normalises each to
the same key as the display name above.

So ``+12125550123`` is on AT&T, ``+12125554567`` on T-Mobile, ``+12125557890``
on Verizon and ``+12125559999`` on the made-up regional carrier. Numbers
outside the US (Canada and the other +1 countries included) are ``unknown``.

``number_for(carrier, index)`` makes distinct, valid US numbers on a chosen
carrier (area codes from a fixed list, exchanges 200-999), so a benchmark can
build an audience with a known carrier mix.
"""

from __future__ import annotations

import phonenumbers

ATT = "att"
TMOBILE = "tmobile"
VERIZON = "verizon"
UNKNOWN = "unknown"
CARRIERS = (ATT, TMOBILE, VERIZON, UNKNOWN)

DISPLAY_NAMES: dict[str, str] = {
    ATT: "AT&T Wireless",
    TMOBILE: "T-Mobile USA, Inc.",
    VERIZON: "Verizon Wireless",
    UNKNOWN: "Pinnacle Regional Wireless",
}

# The names Telnyx reports in ``to[].carrier``: the same carriers, spelt raw.
RAW_NAMES: dict[str, str] = {
    ATT: "AT&T Wireless",
    TMOBILE: "T-MOBILE USA, INC.",
    VERIZON: "Cellco Partnership dba Verizon Wireless",
    UNKNOWN: "PINNACLE REGIONAL WIRELESS",
}

# (mobile country code, mobile network code) as Lookup v2 reports them.
NETWORK_CODES: dict[str, tuple[str, str]] = {
    ATT: ("310", "410"),
    TMOBILE: ("310", "260"),
    VERIZON: ("311", "480"),
    UNKNOWN: ("311", "990"),
}

# First digit of the line number -> carrier; index = that digit.
_BY_FIRST_LINE_DIGIT = (ATT,) * 3 + (TMOBILE,) * 3 + (VERIZON,) * 3 + (UNKNOWN,)

# Each carrier's line numbers: [start, start + span).
_LINE_RANGES: dict[str, tuple[int, int]] = {
    ATT: (0, 3000),
    TMOBILE: (3000, 3000),
    VERIZON: (6000, 3000),
    UNKNOWN: (9000, 1000),
}

# Area codes checked valid with phonenumbers for every exchange 200-999.
AREA_CODES = (
    "212", "213", "312", "415", "617", "202", "206", "214", "215", "303",
    "404", "503", "512", "602", "702", "713", "718", "804", "816", "919",
)  # fmt: skip
_EXCHANGES = 800  # 200..999


def carrier_of(e164: str, region: str | None = None) -> str:
    """The carrier serving ``e164``; pass ``region`` when already known (saves a parse)."""
    if region is None:
        region = _region_of(e164)
    if region != "US" or len(e164) != 12 or not e164[-4:].isdigit():
        return UNKNOWN
    return _BY_FIRST_LINE_DIGIT[ord(e164[-4]) - 48]


def display_name(carrier: str) -> str:
    """The name Lookup reports for a carrier key (``att`` -> ``AT&T Wireless``)."""
    return DISPLAY_NAMES.get(carrier, DISPLAY_NAMES[UNKNOWN])


def raw_name(carrier: str) -> str:
    """The raw name Telnyx reports for a carrier key (``verizon`` -> ``Cellco ...``)."""
    return RAW_NAMES.get(carrier, RAW_NAMES[UNKNOWN])


def network_codes(carrier: str) -> tuple[str, str]:
    return NETWORK_CODES.get(carrier, NETWORK_CODES[UNKNOWN])


def capacity(carrier: str) -> int:
    """How many distinct numbers ``number_for`` can make on ``carrier``."""
    return len(AREA_CODES) * _EXCHANGES * _line_range(carrier)[1]


def number_for(carrier: str, index: int) -> str:
    """The ``index``-th US number on ``carrier``: distinct for each index below capacity()."""
    start, span = _line_range(carrier)
    if not 0 <= index < capacity(carrier):
        raise ValueError(f"index {index} is outside 0..{capacity(carrier) - 1} for {carrier}")
    # The line varies fastest, then the exchange, then the area code.
    rest, line = divmod(index, span)
    area, exchange = divmod(rest, _EXCHANGES)
    return f"+1{AREA_CODES[area]}{200 + exchange}{start + line:04d}"


def _line_range(carrier: str) -> tuple[int, int]:
    try:
        return _LINE_RANGES[carrier]
    except KeyError:
        raise ValueError(f"unknown carrier {carrier!r}; expected one of {CARRIERS}") from None


def _region_of(e164: str) -> str | None:
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(parsed)
