"""Scenarios: what the simulated provider and carriers do, and when.

A scenario is a TOML or JSON file (or a JSON body posted to ``/sim/scenario``).
Time 0 is the simulator's start or its last ``POST /sim/reset``. Example::

    dlr_delay_s = 0.05     # receipts arrive this long after a send
    receipts = true        # post status callbacks at all
    account_mps = 500      # > 500 sends in one second per account -> 429 (20429)
    number_mps = 50        # the same per From number

    [[rules]]              # from t=10 s Verizon filters every text with 30007
    carrier = "verizon"
    from_s = 10
    error_code = "30007"
    mode = "receipt"       # accepted (201), then an undelivered receipt

    [[rules]]              # the provider answers 503 from t=20 s to t=40 s
    from_s = 20
    until_s = 40
    http_status = 503

    [[rules]]              # T-Mobile's receipts arrive 2 s late
    carrier = "tmobile"
    dlr_delay_s = 2.0

A rule matches a text when its ``carrier``, time window (``from_s`` <= t <
``until_s``), ``body_contains`` and ``rate`` all match. ``rate`` picks a
stable fraction of texts by a hash of (To, Body), so a retried text meets the
same fate. Rules are checked in order, in two passes:

* the text's fate is the first matching rule with an ``error_code``,
  ``http_status`` or ``hang``: a provider fault (answer ``http_status``, or
  hang for ``hang_s`` = 60 s, past any client timeout), a sync rejection
  (``mode = "sync"``: HTTP 400 with Twilio's error JSON), or a carrier
  filter (``mode = "receipt"``: 201, then an ``undelivered`` receipt with
  ``ErrorCode``; the text never reaches the handset);
* its receipt delay is the first matching rule's ``dlr_delay_s``, else the
  scenario's, so "Verizon filters" and "receipts are late" combine.
"""

from __future__ import annotations

import json
import tomllib
import zlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from worker.errors import ConfigError
from worker.simulator.carriers import CARRIERS

Carrier = Literal["att", "tmobile", "verizon", "unknown"]


class ScenarioError(ConfigError):
    """A scenario that cannot be used: names the source, the key and the reason."""


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    carrier: Carrier | None = None
    from_s: float = Field(0.0, ge=0)
    until_s: float | None = Field(None, gt=0)
    # Only texts whose body contains this (a campaign's wording, say).
    body_contains: str | None = Field(None, min_length=1)
    error_code: str | None = Field(None, pattern=r"^\d{3,6}$")
    rate: float = Field(1.0, ge=0, le=1)
    mode: Literal["receipt", "sync"] = "receipt"
    http_status: int | None = Field(None, ge=400, le=599)
    hang: bool = False
    hang_s: float = Field(60.0, gt=0, le=3600)
    dlr_delay_s: float | None = Field(None, ge=0, le=3600)

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        if self.until_s is not None and self.until_s <= self.from_s:
            raise ValueError(f"until_s ({self.until_s}) must be after from_s ({self.from_s})")
        if self.hang and self.http_status is not None:
            raise ValueError("a rule either hangs or answers an http_status, not both")
        if not (self.is_fault or self.error_code or self.dlr_delay_s is not None):
            raise ValueError("a rule needs error_code, http_status, hang or dlr_delay_s")
        if self.mode == "sync" and not (self.error_code or self.is_fault):
            raise ValueError('mode = "sync" needs an error_code to reject with')
        return self

    @property
    def is_fault(self) -> bool:
        return self.hang or self.http_status is not None

    def applies(self, t: float, carrier: str, to: str, body: str) -> bool:
        if t < self.from_s or (self.until_s is not None and t >= self.until_s):
            return False
        if self.carrier is not None and carrier != self.carrier:
            return False
        if self.body_contains is not None and self.body_contains not in body:
            return False
        return self.rate >= 1.0 or _fraction(to, body) < self.rate


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dlr_delay_s: float = Field(0.05, ge=0, le=3600)
    receipts: bool = True
    account_mps: int | None = Field(None, ge=1)
    number_mps: int | None = Field(None, ge=1)
    rules: tuple[Rule, ...] = ()

    def fate(self, t: float, carrier: str, to: str, body: str) -> Rule | None:
        """The first rule that does something to this text (an error or a fault), if any."""
        for rule in self.rules:
            if (rule.error_code or rule.is_fault) and rule.applies(t, carrier, to, body):
                return rule
        return None

    def receipt_delay_s(self, t: float, carrier: str, to: str, body: str) -> float:
        """The first matching rule's ``dlr_delay_s``, else the scenario's."""
        for rule in self.rules:
            if rule.dlr_delay_s is not None and rule.applies(t, carrier, to, body):
                return rule.dlr_delay_s
        return self.dlr_delay_s


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
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "(top level)"


def _reason(err: Any) -> str:
    reason = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "literal_error" and err["loc"][-1] == "carrier":
        return f"unknown carrier {err['input']!r}; expected one of {', '.join(CARRIERS)}"
    given = err.get("input")
    if isinstance(given, dict | list):  # a whole rule: its own key says enough
        return reason
    return f"{reason} (got {given!r:.60})"
