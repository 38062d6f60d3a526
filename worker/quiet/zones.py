"""The time zones a number may be in, from phonenumbers' timezone data.

phonenumbers (the full package, not phonenumberslite) ships prefix data for
``timezone.time_zones_for_number``: one zone for most geographic numbers, several
where an area spans zones (Idaho's 208: Boise and Los Angeles), and, where a
number is not geographic or its prefix is not in the data, every zone of its
calling code. For +1 that is all 42 zones of the NANP, from Guam (UTC+10) to
Pago Pago (UTC-11): no hour is daytime in all of them, so a toll-free number
or a Caribbean mobile could never be texted under "strictest". The candidates
are therefore narrowed to the zones tzdata's zone.tab lists for the number's own
region (a +1 800 number is "US": New York to Honolulu), when that leaves any.

A number phonenumbers cannot place at all ("Etc/Unknown") gets no zones here;
the policy then uses the campaign's zone or all of its country's zones.
"""

from __future__ import annotations

import functools
import importlib.resources
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import phonenumbers
from phonenumbers import timezone as pn_timezone

UNKNOWN_ZONE: Final = "Etc/Unknown"
# phonenumbers' timezone data is keyed by E.164 prefixes of at most this many digits,
# so numbers that share these leading digits (and their length) share their zones.
PREFIX_DIGITS: Final = max(9, int(getattr(pn_timezone, "TIMEZONE_LONGEST_PREFIX", 9)))
CACHE_SIZE: Final = 200_000


@dataclass(frozen=True, slots=True)
class Placement:
    """Where phonenumbers puts a number: its candidate zones and its country's zones."""

    zones: tuple[str, ...]  # empty: phonenumbers cannot place it
    country_zones: tuple[str, ...]  # every zone of its region (zone.tab), for that case
    region: str | None


def _zone_tab_text() -> str | None:
    for directory in zoneinfo.TZPATH:
        path = Path(directory) / "zone.tab"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    try:
        resource = importlib.resources.files("tzdata").joinpath("zoneinfo/zone.tab")
        return resource.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return None


@functools.cache
def region_zones() -> dict[str, tuple[str, ...]]:
    """ISO 3166 region -> its zones, from zone.tab (empty if no tz database has one)."""
    out: dict[str, list[str]] = {}
    for line in (_zone_tab_text() or "").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) >= 3:
            out.setdefault(fields[0], []).append(fields[2])
    return {region: tuple(zones) for region, zones in out.items()}


@functools.cache
def known_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _place(number_e164: str) -> Placement:
    try:
        parsed = phonenumbers.parse(number_e164)
    except phonenumbers.NumberParseException:
        return Placement((), (), None)
    region = phonenumbers.region_code_for_number(parsed) or (
        phonenumbers.region_code_for_country_code(parsed.country_code or 0)
    )
    country = region_zones().get(region or "", ())
    zones = tuple(
        z for z in pn_timezone.time_zones_for_number(parsed) if z != UNKNOWN_ZONE and known_zone(z)
    )
    narrowed = tuple(z for z in zones if z in country)
    return Placement(narrowed or zones, tuple(z for z in country if known_zone(z)), region)


_cache: dict[tuple[str, int], Placement] = {}


def place(number_e164: str) -> Placement:
    """The number's placement, cached by its leading digits and length."""
    key = (number_e164[: 1 + PREFIX_DIGITS], len(number_e164))
    found = _cache.get(key)
    if found is None:
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()  # rare and cheap to refill; keeps memory bounded
        found = _cache[key] = _place(number_e164)
    return found
