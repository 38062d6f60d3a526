"""A scenario's ``[[rules]]``: which texts a rule covers and what it does to them.

scenario.py describes the rules that announce themselves (faults, rejections,
carrier filters with an error code, held or dropped answers, late receipts).
This module also holds the rules for the filtering that does **not** announce
itself, each per carrier (optionally per provider, per campaign with
``body_contains``), from a time on (``from_s``/``until_s``)::

    [[rules]]              # from t=60 s Verizon says "delivered" and drops the text
    carrier = "verizon"
    from_s = 60
    silent = true          # the handset never gets it, so it never replies

    [[rules]]              # from t=30 s T-Mobile's receipts stop (texts still arrive)
    carrier = "tmobile"
    from_s = 30
    receipts = false

    [[rules]]              # AT&T's receipts: lognormal, median 5 s, p99 60 s
    carrier = "att"
    dlr_delay_median_s = 5
    dlr_delay_p99_s = 60

    [[rules]]              # Rally texts on AT&T: only 50% delivered, quietly
    carrier = "att"
    body_contains = "Rally"
    deliver_share = 0.5

* ``silent = true``: the provider accepts the text and its receipt says
  "delivered", but the handset never gets it (the engine skips the inbox and
  the handset, so there is never a reply). Counted as ``silently_dropped``.
* ``deliver_share = x``: of the texts the rule covers, a stable share x (a
  seeded hash of To and Body, so a retried or failed-over text meets the same
  fate) is delivered as usual; the others get an "undelivered" receipt with
  the provider's generic *handset unreachable* code (``Dialect.unreachable_code``:
  Twilio 30003, Telnyx 40008, Bandwidth 4702, Plivo 80, Vonage 2; never the
  carrier-block code) and never reach the handset. Counted as
  ``undelivered_by_cut``. A loud cut (carrier-block codes) is the older
  ``rate = 0.5`` with ``error = "carrier_block"``.
* ``receipts = false``: no receipt is posted for the texts the rule covers,
  delivered or not (the texts still reach handsets unless another rule says
  otherwise); ``receipts = true`` turns them back on under a top-level
  ``receipts = false``. Counted as ``receipts_suppressed``.
* ``dlr_delay_median_s`` with ``dlr_delay_p99_s``: the receipt's delay is
  lognormal, the quantile picked by a seeded hash of (To, Body); instead of
  the fixed ``dlr_delay_s``, on a rule or at the scenario's top level.

The passes: a text's *quiet fate* is the first matching rule with ``silent``
or ``deliver_share`` that takes it (a ``deliver_share`` rule takes only the
texts outside its share; the others go on to the next rule), and only when no
rule with an error or fault decided the text first. Whether its receipts are
posted is the first matching rule with ``receipts``, else the scenario's; its
delay the first matching rule with a delay (fixed or lognormal), else the
scenario's. The passes are independent, so "Verizon drops silently from 60 s"
and "Verizon's receipts are lognormal" combine.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from worker.simulator.draws import check_lognormal, fraction

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
MAX_DELAY_S = 3600.0

ACTIONS = (
    "error, error_code, http_status, hang, refuse, drop, delay_s, dlr_delay_s"
    " (or dlr_delay_median_s and dlr_delay_p99_s), silent, deliver_share or receipts"
)


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
    hang_s: float = Field(60.0, gt=0, le=MAX_DELAY_S)
    dlr_delay_s: float | None = Field(None, ge=0, le=MAX_DELAY_S)
    dlr_delay_median_s: float | None = Field(None, gt=0, le=MAX_DELAY_S)
    dlr_delay_p99_s: float | None = Field(None, gt=0, le=MAX_DELAY_S)
    # Refuse the provider's connections for the rule's time window.
    refuse: bool = False
    # A fraction of requests, drawn afresh for each (``rate`` is per text, stable).
    share: float = Field(1.0, ge=0, le=1)
    # An accepted text's answer: held this long, and/or the connection cut instead.
    delay_s: float | None = Field(None, gt=0, le=MAX_DELAY_S)
    drop: DropHow | None = None
    # Quiet filtering: "delivered" but dropped; or only this share delivered.
    silent: bool = False
    deliver_share: float | None = Field(None, ge=0, le=1)
    # None: the rule says nothing about receipts.
    receipts: bool | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        if self.until_s is not None and self.until_s <= self.from_s:
            raise ValueError(f"until_s ({self.until_s}) must be after from_s ({self.from_s})")
        if self.hang and self.http_status is not None:
            raise ValueError("a rule either hangs or answers an http_status, not both")
        if self.error is not None and self.error_code is not None:
            raise ValueError("a rule gives either an error category or an error_code, not both")
        check_lognormal(
            self.dlr_delay_s, self.dlr_delay_median_s, self.dlr_delay_p99_s, prefix="dlr_"
        )
        if self.refuse:
            return self._refusal_only()
        if not self.does_something:
            raise ValueError(f"a rule needs {ACTIONS}")
        if self.mode == "sync" and not (self.has_error or self.is_fault):
            raise ValueError('mode = "sync" needs an error or error_code to reject with')
        if self.shapes_answer:
            self._answer_coherent()
        if self.is_quiet:
            self._quiet_coherent()
        if self.receipts is False and self.has_dlr_delay:
            raise ValueError("receipts = false posts no receipt: a receipt delay means nothing")
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

    def _quiet_coherent(self) -> None:
        if self.silent and self.deliver_share is not None:
            raise ValueError("a rule drops silently or cuts delivery (deliver_share), not both")
        if self.has_error or self.is_fault:
            raise ValueError(
                "silent and deliver_share filter without a word: not with error, error_code,"
                " http_status or hang (a rule with one of those decides the text first)"
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
            "dlr_delay_median_s",
            "dlr_delay_p99_s",
            "delay_s",
            "drop",
            "deliver_share",
            "receipts",
        )
        given = [name for name in others if getattr(self, name) is not None]
        given += [name for name in ("hang", "silent") if getattr(self, name)]
        given += [name for name in ("rate", "share") if getattr(self, name) != 1.0]
        if given:
            raise ValueError(f"a refuse rule takes only provider, from_s and until_s, not {given}")
        return self

    @property
    def does_something(self) -> bool:
        return (
            self.is_fault
            or self.has_error
            or self.shapes_answer
            or self.has_dlr_delay
            or self.is_quiet
            or self.receipts is not None
        )

    @property
    def is_fault(self) -> bool:
        return self.hang or self.http_status is not None

    @property
    def has_error(self) -> bool:
        return self.error is not None or self.error_code is not None

    @property
    def shapes_answer(self) -> bool:
        return self.drop is not None or self.delay_s is not None

    @property
    def has_dlr_delay(self) -> bool:
        return self.dlr_delay_s is not None or self.dlr_delay_median_s is not None

    @property
    def is_quiet(self) -> bool:
        """Filters without a word: silent drops, or a cut share of deliveries."""
        return self.silent or self.deliver_share is not None

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
        return self.rate >= 1.0 or fraction(to, body) < self.rate
