"""Which carrier a recipient is on: an override file, a Redis cache, a lookup API.

Names are normalised ("T-MOBILE USA, INC." -> ``tmobile``); a name sendq does
not know is kept, slugged. A number whose carrier cannot be found is on
``unknown``: its own breaker key, never an error.

Sources, first answer wins: the operator's override file; the cache (fed by
lookups and by providers that name the carrier, like Telnyx); the lookup API
(Twilio Lookup v2 ``line_type_intelligence.carrier_name``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path

import httpx
import redis.asyncio as aioredis
import structlog

from worker import keys
from worker.errors import ConfigError, ProviderError
from worker.providers import transport

log = structlog.get_logger("sendq.carriers")

UNKNOWN = "unknown"
DEFAULT_CACHE_TTL_S = 30 * 24 * 3600
# A failed lookup is retried after this long, not on every text.
DEFAULT_NEGATIVE_TTL_S = 300

# Order matters: the first pattern found in the lowercased name wins.
_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"\bat\s*&\s*t\b|\batt\b|cingular|cricket", "att"),
    (r"t[\s-]*mobile|metro\s*pcs|metro by t|sprint", "tmobile"),
    (r"verizon|cellco|visible", "verizon"),
    (r"u\.?\s*s\.?\s*cellular|uscellular", "uscellular"),
)


def normalise(name: str | None) -> str:
    """A carrier's canonical key: att, tmobile, verizon, uscellular, or a slug."""
    if not name or not name.strip():
        return UNKNOWN
    lowered = name.lower()
    for pattern, key in _PATTERNS:
        if re.search(pattern, lowered):
            return key
    slug = re.sub(r"[^a-z0-9]+", "_", lowered).strip("_")
    return slug[:48] or UNKNOWN


def load_overrides(path: Path) -> dict[str, str]:
    """A CSV of ``number,carrier`` rows (a header line is optional)."""
    from worker.errors import InvalidNumber
    from worker.phone import to_e164

    out: dict[str, str] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for line_no, row in enumerate(csv.reader(handle), start=1):
                first = row[0].strip().lower() if row else ""
                if first in ("number", "to", "") or first.startswith("#"):
                    continue
                if len(row) < 2:
                    raise ConfigError(f"{path}:{line_no}: expected 'number,carrier'")
                try:
                    out[to_e164(row[0].strip())] = normalise(row[1])
                except InvalidNumber as exc:
                    raise ConfigError(f"{path}:{line_no}: {exc.reason}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the carrier override file ({exc})") from None
    return out


class CarrierResolver:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        ns: str = keys.DEFAULT_NAMESPACE,
        overrides: Mapping[str, str] | None = None,
        lookup: httpx.AsyncClient | None = None,
        cache_ttl_s: int = DEFAULT_CACHE_TTL_S,
    ) -> None:
        self.client = client
        self.ns = ns
        self.overrides = dict(overrides or {})
        self.lookup_client = lookup
        self.cache_ttl_s = cache_ttl_s

    async def carrier_of(self, number: str) -> str:
        if number in self.overrides:
            return self.overrides[number]
        cached = await self.client.get(keys.carrier(number, self.ns))
        if cached is not None:
            return cached.decode() if isinstance(cached, bytes) else str(cached)
        return await self._lookup(number)

    async def remember(self, number: str, carrier_name: str | None) -> None:
        """Cache what a provider said about the number (on a send or in a receipt)."""
        if carrier_name and number:
            await self.client.set(
                keys.carrier(number, self.ns), normalise(carrier_name), ex=self.cache_ttl_s
            )

    async def _lookup(self, number: str) -> str:
        if self.lookup_client is None:
            return UNKNOWN
        try:
            response = await transport.request(
                self.lookup_client,
                "lookup",
                "GET",
                f"/v2/PhoneNumbers/{number}",
                params={"Fields": "line_type_intelligence"},
            )
            response.raise_for_status()
            info = response.json().get("line_type_intelligence") or {}
            carrier = normalise(info.get("carrier_name"))
            ttl = self.cache_ttl_s
        except (ProviderError, httpx.HTTPStatusError, ValueError, AttributeError) as exc:
            # The log processor masks the number and any secret in the error.
            log.warning("carrier lookup failed", to=number, error=str(exc)[:200])
            carrier, ttl = UNKNOWN, DEFAULT_NEGATIVE_TTL_S
        await self.client.set(keys.carrier(number, self.ns), carrier, ex=ttl)
        return carrier
