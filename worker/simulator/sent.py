"""What each provider accepted: its message log, which its look-up APIs answer from.

A real provider keeps every message it took, delivered or filtered, and lets
the account list them (Twilio's Message list: ``GET .../Messages.json?To=...
&From=...&DateSent>=...``). The simulator keeps the same log, so a client that
never heard an answer (the connection was dropped, or the answer came after its
timeout) can ask whether the text was taken, as it would ask the real service.

A text is in the log from the moment it is accepted, whatever happened to the
answer: that is the point of a look-up. Its status follows its receipt:
``sent`` until the receipt is due, then ``delivered`` or ``undelivered``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from worker.simulator.inbox import Text


@dataclass(slots=True)
class Sent:
    text: Text
    # The account the send authenticated as: an account lists only its own.
    account: str
    segments: int
    # The carrier's error code when it filtered the text; None: delivered.
    code: str | None
    # Unix time the receipt says delivered or undelivered (inf: no receipts).
    final_at: float = math.inf
    # Dropped by a silent rule: the receipt says delivered, the handset got nothing.
    silent: bool = False

    def status(self, now: float) -> str:
        if now < self.final_at:
            return "sent"
        return "undelivered" if self.code else "delivered"


class SentLog:
    """Every accepted text, per provider and recipient, in the order taken."""

    def __init__(self) -> None:
        self._by_provider: dict[str, dict[str, list[Sent]]] = {}

    def record(self, sent: Sent) -> None:
        by_to = self._by_provider.setdefault(sent.text.provider, {})
        by_to.setdefault(sent.text.to, []).append(sent)

    def find(
        self,
        provider: str,
        *,
        account: str | None = None,
        to: str | None = None,
        sender: str | None = None,
        since: float = -math.inf,
        until: float = math.inf,
    ) -> list[Sent]:
        """The provider's texts matching every filter given, newest first (as Twilio lists).

        ``since`` <= taken at <= ``until``, in Unix seconds.
        """
        by_to = self._by_provider.get(provider, {})
        pools = [by_to.get(to, [])] if to is not None else list(by_to.values())
        found = [
            s
            for pool in pools
            for s in pool
            if (account is None or s.account == account)
            and (sender is None or s.text.sender == sender)
            and since <= s.text.at <= until
        ]
        found.sort(key=lambda s: s.text.at, reverse=True)
        return found

    def to(self, number: str) -> list[Sent]:
        """Every text any provider took for ``number``, filtered ones too, oldest first."""
        found = [s for by_to in self._by_provider.values() for s in by_to.get(number, ())]
        found.sort(key=lambda s: s.text.at)
        return found

    def clear(self) -> None:
        self._by_provider.clear()
