"""What every provider dialect does, and the values passed between a dialect and the engine.

A dialect is one provider's HTTP face: it reads and authenticates a send
request, phrases each answer (accepted, invalid, rejected, throttled, fault)
in that provider's JSON and codes, and builds that provider's signed delivery
receipt. The engine (engine.py) decides what happens to a text and knows no
provider by name; app.py mounts each dialect's send route.

The flow, for every provider::

    app: body -> dialect.parse -> SendRequest (or an Outcome: 401, bad JSON)
    engine: throttle -> dialect.invalid -> To valid? -> scenario fate -> inbox
            -> dialect.receipts (scheduled) -> dialect.accepted -> Outcome
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from worker.simulator.inbox import Text
from worker.simulator.scenario import ErrorCategory, ProviderName, Scenario

# Throttling windows are one second long, so a client may retry after one.
RETRY_AFTER_S = 1


# Outcome and SendRequest are made on every send: plain (not frozen) slotted
# dataclasses build in a third of the time, and nothing mutates them.
@dataclass(slots=True)
class Outcome:
    """An HTTP answer: status, JSON body, headers."""

    status: int
    body: Any
    headers: dict[str, str] | None = None
    # > 0: the web layer sleeps this long before answering (a hanging fault, or an
    # accepted text's answer held past the client's timeout).
    hang_s: float = 0.0
    # Instead of answering, cut the connection: "reset" (RST) or "close" (FIN).
    drop: str | None = None
    # The request's credentials were refused (it is counted as unauthorized).
    auth_failed: bool = False


@dataclass(slots=True)
class SendRequest:
    """A send, as any provider's request reduces to it."""

    # The account the request authenticated as: throttling counts per account.
    account: str
    to: str
    sender: str
    body: str
    # The receipt URL the request named, if any.
    callback: str | None = None
    # Provider fields the answers and receipts echo (Bandwidth's tag, Vonage's client-ref).
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A receipt ready to post: a signed HTTP request."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""


# Builds a receipt's request for one attempt (1, 2, ...): signatures that cover a
# timestamp must be made when posting, not when the text was sent.
ReceiptBuilder = Callable[[int], Outgoing]


class Dialect(abc.ABC):
    """One provider's API: subclasses set the class attributes and the methods."""

    name: ClassVar[ProviderName]
    send_path: ClassVar[str]
    # Each error category's representative code in receipts, and in sync answers.
    receipt_codes: ClassVar[Mapping[ErrorCategory, str]]
    sync_codes: ClassVar[Mapping[ErrorCategory, str]]
    # The receipt code of a text a ``deliver_share`` rule cut: the provider's generic
    # "handset unreachable", which says nothing of filtering (never its block code).
    unreachable_code: ClassVar[str]

    def code_for(self, category: ErrorCategory, *, sync: bool) -> str:
        return (self.sync_codes if sync else self.receipt_codes)[category]

    def use_scenario(self, scenario: Scenario) -> None:
        """A new scenario is in play: take what concerns this provider (its signing)."""
        return None

    @abc.abstractmethod
    def parse(
        self, path_params: Mapping[str, str], headers: Mapping[str, str], raw: bytes
    ) -> SendRequest | Outcome:
        """Authenticate and read a send; an Outcome (401, 400) when it cannot be taken."""

    @abc.abstractmethod
    def invalid(self, request: SendRequest) -> Outcome | None:
        """The answer to a send missing a field (or with a bad one), else None."""

    @abc.abstractmethod
    def invalid_to(self, request: SendRequest) -> Outcome:
        """The answer to a send whose To is not a valid number."""

    @abc.abstractmethod
    def new_id(self) -> str:
        """A message id in the provider's format."""

    @abc.abstractmethod
    def accepted(self, text: Text, request: SendRequest, segments: int) -> Outcome:
        """The success answer for an accepted text."""

    @abc.abstractmethod
    def rejected(self, code: str) -> Outcome:
        """A sync rejection (a scenario rule with mode = "sync") carrying ``code``."""

    @abc.abstractmethod
    def throttled(self, retry_after_s: int) -> Outcome:
        """The 429 answer, with the provider's retry headers."""

    @abc.abstractmethod
    def fault(self, status: int, code: str | None) -> Outcome:
        """A provider fault (5xx, or any status a rule names) in the provider's error shape."""

    @abc.abstractmethod
    def receipts(
        self, text: Text, request: SendRequest, url: str, code: str | None, segments: int
    ) -> list[ReceiptBuilder]:
        """The final receipt(s) for ``text`` (undelivered with ``code``, else delivered)."""


def iso_now() -> str:
    """The current UTC time in ISO 8601 with milliseconds, as Telnyx and Bandwidth write it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
