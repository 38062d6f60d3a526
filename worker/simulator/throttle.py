"""Throughput limits: fixed one-second windows per provider account and per From number.

Each provider counts on its own: its accounts and its numbers share nothing
with another provider's, as on the real services.
"""

from __future__ import annotations

import time


class Throttle:
    """Admits a send while its account and its From number are under their limits."""

    def __init__(self) -> None:
        self._second = -1
        # provider -> key -> sends this second; accounts and numbers share a dict,
        # their key spaces apart (account ids never start with "+", numbers do).
        self._counts: dict[str, dict[str, int]] = {}

    def admit(
        self,
        provider: str,
        account: str,
        sender: str,
        account_mps: int | None,
        number_mps: int | None,
    ) -> bool:
        if account_mps is None and number_mps is None:
            return True  # the common case: no limits, nothing to count
        second = int(time.monotonic())
        if second != self._second:
            self._second, self._counts = second, {}
        counts = self._counts.get(provider)
        if counts is None:
            counts = self._counts[provider] = {}
        used_account = counts.get(account, 0)
        used_number = counts.get(sender, 0)
        if account_mps is not None and used_account >= account_mps:
            return False
        if number_mps is not None and used_number >= number_mps:
            return False
        counts[account] = used_account + 1
        counts[sender] = used_number + 1
        return True

    def reset(self) -> None:
        self._second, self._counts = -1, {}
