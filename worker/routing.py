"""Which sending number a recipient gets: sticky, by rendezvous hashing.

Each (recipient, number) pair gets a score; the highest wins. A recipient
keeps its number for as long as that number is in the pool, and when the pool
changes only the recipients of added or removed numbers move.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _score(recipient: str, number: str) -> int:
    digest = hashlib.blake2b(f"{recipient}|{number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def sticky_sender(recipient: str, pool: Sequence[str]) -> str:
    if not pool:
        raise ValueError("the sending-number pool is empty")
    return max(pool, key=lambda number: _score(recipient, number))
