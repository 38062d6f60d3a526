"""Scenarios: what the simulated providers and carriers do, and when.

A scenario is a TOML or JSON file (or a JSON body posted to ``/sim/scenario``).
Time 0 is the simulator's start or its last ``POST /sim/reset``. Example::

    dlr_delay_s = 0.05     # receipts arrive this long after a send (the default), or
                           # dlr_delay_median_s = 5 and dlr_delay_p99_s = 60: lognormal
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
* its receipt delay is the first matching rule's ``dlr_delay_s`` (or its
  lognormal ``dlr_delay_median_s`` and ``dlr_delay_p99_s``), else the
  scenario's, so "Verizon filters" and "receipts are late" combine.

Filtering that does not announce itself has rules of its own (rules.py, with
an example): ``silent = true`` (receipts say "delivered", the handset never
gets the text), ``deliver_share = x`` (only that share delivered, the rest
"undelivered" with a generic unreachable code), and ``receipts = false`` on a
rule (that carrier's receipts stop). A lognormal delay picks its quantile by a
hash of (``seed``, To, Body), so a rerun repeats it.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from worker.errors import ConfigError
from worker.simulator.carriers import CARRIERS
from worker.simulator.draws import check_lognormal, lognormal_s, unit
from worker.simulator.replies import ReplySettings
from worker.simulator.rules import (
    ERROR_CATEGORIES,
    MAX_DELAY_S,
    PROVIDERS,
    Carrier,
    DropHow,
    ErrorCategory,
    ProviderName,
    Rule,
)
from worker.simulator.signing_settings import SigningSettings

__all__ = [
    "ERROR_CATEGORIES",
    "PROVIDERS",
    "Carrier",
    "DropHow",
    "ErrorCategory",
    "ProviderLimits",
    "ProviderName",
    "Rule",
    "Scenario",
    "ScenarioError",
    "from_data",
    "load",
    "parse",
]


DEFAULT_DLR_DELAY_S = 0.05


class ScenarioError(ConfigError):
    """A scenario that cannot be used: names the source, the key and the reason."""


class ProviderLimits(BaseModel):
    """One provider's throughput limits; an unset one is the scenario's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_mps: int | None = Field(None, ge=1)
    number_mps: int | None = Field(None, ge=1)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Unset (and no lognormal): DEFAULT_DLR_DELAY_S.
    dlr_delay_s: float | None = Field(None, ge=0, le=MAX_DELAY_S)
    dlr_delay_median_s: float | None = Field(None, gt=0, le=MAX_DELAY_S)
    dlr_delay_p99_s: float | None = Field(None, gt=0, le=MAX_DELAY_S)
    receipts: bool = True
    account_mps: int | None = Field(None, ge=1)
    number_mps: int | None = Field(None, ge=1)
    providers: dict[ProviderName, ProviderLimits] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    # Seeds the draws of ``share`` rules (at start, on a reset and on a new scenario),
    # and the hashes of deliver_share and lognormal receipt delays.
    seed: int | None = None
    replies: ReplySettings = Field(default_factory=ReplySettings)
    signing: SigningSettings = Field(default_factory=SigningSettings)

    @model_validator(mode="after")
    def _delays(self) -> Scenario:
        check_lognormal(
            self.dlr_delay_s, self.dlr_delay_median_s, self.dlr_delay_p99_s, prefix="dlr_"
        )
        return self

    def limits(self, provider: str) -> tuple[int | None, int | None]:
        """(account_mps, number_mps) for ``provider``: its own, else the scenario's."""
        own = self.providers.get(provider)  # type: ignore[call-overload]
        account = own.account_mps if own is not None and own.account_mps else self.account_mps
        number = own.number_mps if own is not None and own.number_mps else self.number_mps
        return account, number

    # Each pass below takes the same text: (t, carrier, to, body, provider, draws).

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

    def quiet(
        self,
        t: float,
        carrier: str,
        to: str,
        body: str,
        provider: str | None = None,
        draws: Sequence[float] = (),
    ) -> Rule | None:
        """The first matching rule that filters this text without a word, if any: a
        silent rule, or a deliver_share rule whose cut share the text falls in.

        The number that places a text in or out of a share is the text's (seeded),
        not the rule's, as ``rate``'s is: a share of 0.3 keeps a subset of 0.5's.
        """
        kept: float | None = None
        for i, rule in enumerate(self.rules):
            if not rule.is_quiet or not rule.applies(
                t, carrier, to, body, provider, _nth(draws, i)
            ):
                continue
            if rule.deliver_share is None:
                return rule
            if kept is None:
                kept = unit(self.seed or 0, "deliver", f"{to}\x00{body}")
            if kept >= rule.deliver_share:
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

    def receipts_on(
        self,
        t: float,
        carrier: str,
        to: str,
        body: str,
        provider: str | None = None,
        draws: Sequence[float] = (),
    ) -> bool:
        """Whether this text's receipts are posted: the first matching rule's
        ``receipts``, else the scenario's."""
        for i, rule in enumerate(self.rules):
            if rule.receipts is not None and rule.applies(
                t, carrier, to, body, provider, _nth(draws, i)
            ):
                return rule.receipts
        return self.receipts

    def receipt_delay_s(
        self,
        t: float,
        carrier: str,
        to: str,
        body: str,
        provider: str | None = None,
        draws: Sequence[float] = (),
    ) -> float:
        """The first matching rule's receipt delay (fixed or lognormal), else the scenario's."""
        for i, rule in enumerate(self.rules):
            if rule.has_dlr_delay and rule.applies(t, carrier, to, body, provider, _nth(draws, i)):
                return self._delay_s(
                    rule.dlr_delay_s, rule.dlr_delay_median_s, rule.dlr_delay_p99_s, to, body
                )
        return self._delay_s(
            self.dlr_delay_s, self.dlr_delay_median_s, self.dlr_delay_p99_s, to, body
        )

    def _delay_s(
        self, fixed: float | None, median_s: float | None, p99_s: float | None, to: str, body: str
    ) -> float:
        if fixed is not None:
            return fixed
        if median_s is None or p99_s is None:
            return DEFAULT_DLR_DELAY_S
        u = unit(self.seed or 0, "dlr", f"{to}\x00{body}")
        return lognormal_s(u, median_s, p99_s, MAX_DELAY_S)

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
