"""Scenarios: what the simulated providers and carriers do, and when.

A scenario is a TOML or JSON file (or a JSON body posted to ``/sim/scenario``).
Time 0 is the simulator's start or its last ``POST /sim/reset``. Example::

    dlr_delay_s = 0.05     # receipts arrive this long after a send
    receipts = true        # post delivery receipts at all
    account_mps = 500      # > 500 sends in one second per account -> 429
    number_mps = 50        # the same per From number

    [providers.telnyx]     # Telnyx's own limits (unset keys: the ones above)
    account_mps = 50
    number_mps = 1

    [[rules]]              # from t=10 s Verizon filters every text, on every provider
    carrier = "verizon"
    from_s = 10
    error = "carrier_block"  # each provider's own code: 30007, 40002, 4470, 30, 6
    mode = "receipt"       # accepted, then an undelivered receipt

    [[rules]]              # Twilio answers 503 from t=20 s to t=40 s; the others don't
    provider = "twilio"
    from_s = 20
    until_s = 40
    http_status = 503

    [[rules]]              # Telnyx refuses TCP connections from t=5 s to t=8 s
    provider = "telnyx"
    from_s = 5
    until_s = 8
    refuse = true

    [[rules]]              # T-Mobile's receipts arrive 2 s late
    carrier = "tmobile"
    dlr_delay_s = 2.0

    [[rules]]              # 5% of Twilio's sends: taken, then the connection is reset
    provider = "twilio"
    share = 0.05
    drop = "reset"

    [[rules]]              # 5% of Telnyx's sends: taken, answered only 30 s later
    provider = "telnyx"
    share = 0.05
    delay_s = 30

A rule matches a text when its ``provider``, ``carrier``, time window
(``from_s`` <= t < ``until_s``), ``body_contains``, ``rate`` and ``share``
all match. ``rate`` picks a stable fraction of texts by a hash of (To, Body),
so a retried text meets the same fate; ``share`` picks a fraction of
*requests* at random, so a resend of the same text draws again (faults of the
connection, not of the text). Each rule draws on its own, so two rules of 50%
both cover a quarter of the requests; a scenario's ``seed`` makes the draws
repeat from a reset. Rules are checked in order, in three passes:

* the text's fate is the first matching rule with an ``error``,
  ``error_code``, ``http_status`` or ``hang``: a provider fault (answer
  ``http_status`` in that provider's error shape, or hang for ``hang_s`` =
  60 s, past any client timeout), a sync rejection (``mode = "sync"``: the
  provider's error answer), or a carrier filter (``mode = "receipt"``:
  accepted, then an undelivered receipt; the text never reaches the handset);
* the answer to a text the provider *accepted* (it reaches the handset, or
  is filtered by its carrier, and its receipt is posted as usual) is shaped
  by the first matching rule with ``drop`` or ``delay_s``: ``delay_s`` holds
  the answer that long (past the client's timeout, or past sendq's lease;
  up to an hour), ``drop`` reads the whole request and then cuts the
  connection without answering (``"reset"``: an RST; ``"close"``: a FIN).
  Both together: the answer is held, then the connection is cut. This is
  the dangerous case for double sends: the provider took the text but the
  client never heard;
* its receipt delay is the first matching rule's ``dlr_delay_s``, else the
  scenario's, so "Verizon filters" and "receipts are late" combine.

``error`` names a category (carrier_block, bad_number, opted_out, throttled,
transient, ambiguous) that each provider's dialect turns into its own
representative code; ``error_code`` is a literal code used as is on every
provider the rule covers (so give it a ``provider`` unless it is Twilio's and
only Twilio is in play, as in older scenario files).

``refuse = true`` acts before any request is read: while the rule's window is
open, the provider's own port (``--provider-port``) stops listening, so a
connect gets ECONNREFUSED; on the shared main port, where one provider cannot
be refused alone, its requests are cut off without an answer (the connection
is aborted). A refuse rule names only ``provider`` and the time window.

``[replies]`` makes handsets answer (replies.py), ``[signing.twilio]`` signs
Twilio's webhooks with a SharedKey (signing_settings.py).
"""

from __future__ import annotations

import json
import random
import tomllib
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from worker.errors import ConfigError
from worker.simulator.carriers import CARRIERS
from worker.simulator.replies import ReplySettings
from worker.simulator.signing_settings import SigningSettings

Carrier = Literal["att", "tmobile", "verizon", "unknown"]
ProviderName = Literal["twilio", "telnyx", "bandwidth", "plivo", "vonage"]
PROVIDERS: tuple[ProviderName, ...] = get_args(ProviderName)
# What a carrier (or provider) said, in sendq's words; each dialect has its code for each.
ErrorCategory = Literal[
    "carrier_block", "bad_number", "opted_out", "throttled", "transient", "ambiguous"
]
ERROR_CATEGORIES: tuple[ErrorCategory, ...] = get_args(ErrorCategory)
# How a drop rule cuts the connection: an RST (SO_LINGER 0), or an orderly FIN.
DropHow = Literal["reset", "close"]


class ScenarioError(ConfigError):
    """A scenario that cannot be used: names the source, the key and the reason."""


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # None: every provider.
    provider: ProviderName | None = None
    carrier: Carrier | None = None
    from_s: float = Field(0.0, ge=0)
    until_s: float | None = Field(None, gt=0)
    # Only texts whose body contains this (a campaign's wording, say).
    body_contains: str | None = Field(None, min_length=1)
    # A category each provider maps to its own code, or a literal code used as is.
    error: ErrorCategory | None = None
    error_code: str | None = Field(None, pattern=r"^\d{1,6}$")
    rate: float = Field(1.0, ge=0, le=1)
    mode: Literal["receipt", "sync"] = "receipt"
    http_status: int | None = Field(None, ge=400, le=599)
    hang: bool = False
    hang_s: float = Field(60.0, gt=0, le=3600)
    dlr_delay_s: float | None = Field(None, ge=0, le=3600)
    # Refuse the provider's connections for the rule's time window.
    refuse: bool = False
    # A fraction of requests, drawn afresh for each (``rate`` is per text, stable).
    share: float = Field(1.0, ge=0, le=1)
    # An accepted text's answer: held this long, and/or the connection cut instead.
    delay_s: float | None = Field(None, gt=0, le=3600)
    drop: DropHow | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        if self.until_s is not None and self.until_s <= self.from_s:
            raise ValueError(f"until_s ({self.until_s}) must be after from_s ({self.from_s})")
        if self.hang and self.http_status is not None:
            raise ValueError("a rule either hangs or answers an http_status, not both")
        if self.error is not None and self.error_code is not None:
            raise ValueError("a rule gives either an error category or an error_code, not both")
        if self.refuse:
            return self._refusal_only()
        if not (
            self.is_fault or self.has_error or self.shapes_answer or self.dlr_delay_s is not None
        ):
            raise ValueError(
                "a rule needs error, error_code, http_status, hang, refuse, drop, delay_s"
                " or dlr_delay_s"
            )
        if self.mode == "sync" and not (self.has_error or self.is_fault):
            raise ValueError('mode = "sync" needs an error or error_code to reject with')
        if self.shapes_answer:
            self._answer_coherent()
        return self

    def _answer_coherent(self) -> None:
        # drop and delay_s act on a text the provider took; these answer without taking it.
        if self.is_fault:
            raise ValueError(
                "drop and delay_s shape an accepted text's answer: not with http_status"
                " or hang, a fault that takes nothing"
            )
        if self.mode == "sync":
            raise ValueError(
                'drop and delay_s shape an accepted text\'s answer: not with mode = "sync",'
                " a rejection that takes nothing"
            )

    def _refusal_only(self) -> Rule:
        # A refused connection carries no text: nothing else of a rule can apply.
        others = (
            "carrier",
            "body_contains",
            "error",
            "error_code",
            "http_status",
            "dlr_delay_s",
            "delay_s",
            "drop",
        )
        given = [name for name in others if getattr(self, name) is not None]
        if self.hang:
            given.append("hang")
        given += [name for name in ("rate", "share") if getattr(self, name) != 1.0]
        if given:
            raise ValueError(f"a refuse rule takes only provider, from_s and until_s, not {given}")
        return self

    @property
    def is_fault(self) -> bool:
        return self.hang or self.http_status is not None

    @property
    def has_error(self) -> bool:
        return self.error is not None or self.error_code is not None

    @property
    def shapes_answer(self) -> bool:
        return self.drop is not None or self.delay_s is not None

    def in_window(self, t: float) -> bool:
        return self.from_s <= t and (self.until_s is None or t < self.until_s)

    def applies(
        self,
        t: float,
        carrier: str,
        to: str,
        body: str,
        provider: str | None = None,
        draw: float = 0.0,
    ) -> bool:
        """Whether the rule covers this text; ``provider`` None matches any rule's.

        ``draw`` is this request's number in [0, 1) for this rule (``Scenario.draw``).
        """
        if t < self.from_s or (self.until_s is not None and t >= self.until_s):
            return False
        if self.provider is not None and provider is not None and provider != self.provider:
            return False
        if self.carrier is not None and carrier != self.carrier:
            return False
        if self.body_contains is not None and self.body_contains not in body:
            return False
        if self.share < 1.0 and draw >= self.share:
            return False
        return self.rate >= 1.0 or _fraction(to, body) < self.rate


class ProviderLimits(BaseModel):
    """One provider's throughput limits; an unset one is the scenario's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_mps: int | None = Field(None, ge=1)
    number_mps: int | None = Field(None, ge=1)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dlr_delay_s: float = Field(0.05, ge=0, le=3600)
    receipts: bool = True
    account_mps: int | None = Field(None, ge=1)
    number_mps: int | None = Field(None, ge=1)
    providers: dict[ProviderName, ProviderLimits] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    # Seeds the draws of ``share`` rules (at start, on a reset and on a new scenario).
    seed: int | None = None
    replies: ReplySettings = Field(default_factory=ReplySettings)
    signing: SigningSettings = Field(default_factory=SigningSettings)

    def limits(self, provider: str) -> tuple[int | None, int | None]:
        """(account_mps, number_mps) for ``provider``: its own, else the scenario's."""
        own = self.providers.get(provider)  # type: ignore[call-overload]
        account = own.account_mps if own is not None and own.account_mps else self.account_mps
        number = own.number_mps if own is not None and own.number_mps else self.number_mps
        return account, number

    def fate(
        self,
        t: float,
        carrier: str,
        to: str,
        body: str,
        provider: str | None = None,
        draws: Sequence[float] = (),
    ) -> Rule | None:
        """The first rule that does something to this text (an error or a fault), if any.

        ``draws`` is the request's ``draw()``: one number per rule, the same in
        every pass, so a rule's share covers the same requests in each (a rule with
        drop and dlr_delay_s drops and delays the same sends).
        """
        for i, rule in enumerate(self.rules):
            if (rule.has_error or rule.is_fault) and rule.applies(
                t, carrier, to, body, provider, _nth(draws, i)
            ):
                return rule
        return None

    def answer(
        self,
        t: float,
        carrier: str,
        to: str,
        body: str,
        provider: str | None = None,
        draws: Sequence[float] = (),
    ) -> Rule | None:
        """The first matching rule that holds or drops an accepted text's answer, if any."""
        for i, rule in enumerate(self.rules):
            if rule.shapes_answer and rule.applies(t, carrier, to, body, provider, _nth(draws, i)):
                return rule
        return None

    def receipt_delay_s(
        self,
        t: float,
        carrier: str,
        to: str,
        body: str,
        provider: str | None = None,
        draws: Sequence[float] = (),
    ) -> float:
        """The first matching rule's ``dlr_delay_s``, else the scenario's."""
        for i, rule in enumerate(self.rules):
            if rule.dlr_delay_s is not None and rule.applies(
                t, carrier, to, body, provider, _nth(draws, i)
            ):
                return rule.dlr_delay_s
        return self.dlr_delay_s

    def rng(self) -> random.Random:
        """The source of ``draw()``'s numbers: seeded when the scenario says so."""
        return random.Random(self.seed)

    def draw(self, rng: random.Random) -> tuple[float, ...]:
        """One request's numbers, one per rule, so rules' shares fall independently;
        none when no rule has a share (the common case costs nothing)."""
        if not any(rule.share < 1.0 for rule in self.rules):
            return ()
        return tuple(rng.random() for _ in self.rules)

    def refusals(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.refuse)


def _nth(draws: Sequence[float], index: int) -> float:
    return draws[index] if index < len(draws) else 0.0


def _fraction(to: str, body: str) -> float:
    """A stable pseudo-random number in [0, 1) per text: a retried text meets the same fate."""
    return (zlib.crc32(f"{to}\x00{body}".encode()) & 0xFFFFFFFF) / 2**32


def load(path: Path) -> Scenario:
    """Read a ``.toml`` or ``.json`` scenario file; raise ScenarioError naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: the scenario file is not UTF-8 text") from None
    return parse(text, source=str(path), fmt="json" if path.suffix == ".json" else "toml")


def parse(text: str, *, source: str, fmt: Literal["toml", "json"]) -> Scenario:
    try:
        data: Any = json.loads(text) if fmt == "json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{source}: not valid {fmt.upper()} ({exc})") from None
    return from_data(data, source=source)


def from_data(data: object, *, source: str) -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario must be a table/object of settings")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_describe(source, exc)) from None


def _describe(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid scenario:"]
    for err in exc.errors():
        lines.append(f"  {_key(err['loc'])}: {_reason(err)}")
    return "\n".join(lines)


def _key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        if part == "[key]":  # pydantic's mark for a bad dict key; the key says it
            continue
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "(top level)"


def _reason(err: Any) -> str:
    reason = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "literal_error" and err["loc"][-1] == "carrier":
        return f"unknown carrier {err['input']!r}; expected one of {', '.join(CARRIERS)}"
    if err["type"] == "literal_error" and (
        err["loc"][-1] == "provider" or err["loc"][0] == "providers"
    ):
        return f"unknown provider {err['input']!r}; expected one of {', '.join(PROVIDERS)}"
    if err["type"] == "literal_error" and err["loc"][-1] == "error":
        known = ", ".join(ERROR_CATEGORIES)
        return f"unknown error category {err['input']!r}; expected one of {known}"
    given = err.get("input")
    if isinstance(given, dict | list):  # a whole rule: its own key says enough
        return reason
    return f"{reason} (got {given!r:.60})"
