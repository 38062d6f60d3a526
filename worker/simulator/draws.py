"""Stable draws: the same text gets the same number, run after run.

A simulated carrier that decides a text's fate by a hash of the text, not by a
random generator, decides it the same way when sendq retries the text, when a
failover resends it through another provider, and when a benchmark reruns the
scenario; concurrency (which send is served first) cannot change it either.

``fraction`` is the plain per-text number that ``rate`` has always used;
``unit`` is salted (one salt per decision, so two decisions on one text are
independent) and seeded (another seed, another set of texts). ``lognormal_s``
turns such a number into a delay with a given median and 99th percentile.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from statistics import NormalDist

# z of the 99th percentile: a lognormal's p99 is median * exp(sigma * z99).
Z99 = NormalDist().inv_cdf(0.99)
# inv_cdf is undefined at 0 and 1; a hash lands there with probability ~2**-64.
_EDGE = 1e-12


def fraction(to: str, body: str) -> float:
    """A stable number in [0, 1) per (To, Body): what a rule's ``rate`` compares."""
    return (zlib.crc32(f"{to}\x00{body}".encode()) & 0xFFFFFFFF) / 2**32


def unit(seed: int, salt: str, key: str) -> float:
    """A stable number in [0, 1) for (seed, salt, key)."""
    digest = hashlib.blake2b(f"{seed}\x00{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def lognormal_s(u: float, median_s: float, p99_s: float, max_s: float) -> float:
    """The ``u``-quantile of the lognormal with this median and p99, capped at ``max_s``."""
    sigma = math.log(p99_s / median_s) / Z99
    z = NormalDist().inv_cdf(min(max(u, _EDGE), 1 - _EDGE))
    return min(median_s * math.exp(sigma * z), max_s)


def check_lognormal(
    fixed: float | None, median_s: float | None, p99_s: float | None, *, prefix: str
) -> None:
    """Raise ValueError unless the delay keys (``{prefix}delay_s`` and the lognormal's
    ``{prefix}delay_median_s``, ``{prefix}delay_p99_s``) make one delay."""
    median_key, p99_key = f"{prefix}delay_median_s", f"{prefix}delay_p99_s"
    if (median_s is None) != (p99_s is None):
        raise ValueError(f"{median_key} and {p99_key} come together (a lognormal)")
    if median_s is None or p99_s is None:
        return
    if fixed is not None:
        raise ValueError(f"give either {prefix}delay_s or {median_key} and {p99_key}, not both")
    if p99_s < median_s:
        raise ValueError(f"{p99_key} ({p99_s}) must be at least {median_key} ({median_s})")
