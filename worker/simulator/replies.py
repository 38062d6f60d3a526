"""A scenario's ``[replies]`` table: which handsets answer, when, and what they say.

Example (every key is optional; with no ``rate`` nobody replies)::

    [replies]
    rate = 0.10             # share of texts that reached a handset that get a reply
    delay_median_s = 45     # lognormal delay after the text arrived (the default) ...
    delay_p99_s = 900       # ... (or delay_s = 2 for a fixed one)
    seed = 7                # another seed, other handsets; the same seed, the same run
    per = "text"            # "handset": decide once per person, on their first text
    from_s = 0              # only texts that arrive in this window of the scenario
    until_s = 300           #   clock get replies
    body_contains = "Rally" # only texts whose body contains this (a campaign's)
    inbound_url = "http://127.0.0.1:8600"   # default: the text's receipt URL's base
    vonage_method = "GET"   # how Vonage delivers inbound SMS: GET, POST or POST-JSON
    stop_confirmations = ["You're unsubscribed"]  # the one text allowed after a STOP

    [replies.kinds]         # relative weights (default DEFAULT_KINDS); once this
                            # table is given, kinds left out of it never happen
    ordinary = 0.80
    stop = 0.12
    possible = 0.05
    help = 0.02
    start = 0.01

    [replies.bodies]        # what a kind says (default: DEFAULT_BODIES)
    stop = ["STOP", "Stop."]

    [replies.carriers]      # this carrier's handsets reply at this rate instead
    verizon = 0.03
    unknown = 0.0           # never

What a reply is, for each text that reached a handset (a carrier-filtered text
never does, so it never gets one): a stable hash of (``seed``, To, Body), or
of (``seed``, To) with ``per = "handset"``, picks whether it replies (below the
carrier's rate), its kind (by the weights), its body and its delay, so a run
repeats exactly and a retried or doubled text meets the same answer (and is
answered once). A person whose reply was ``stop`` or ``possible`` never
replies again.

**Rates by carrier.** ``rate`` is the base rate; ``[replies.carriers]`` lets
it vary a little by carrier, as real audiences do (say ``att = 0.045``,
``tmobile = 0.04``, ``verizon = 0.035`` with ``rate = 0.04``); a carrier left
out replies at ``rate``.

**Delays.** People answer a text within a minute or two, with a long tail:
the often-quoted figures are 90 s on average and 95% of texts read within
3 minutes (Viber, "text message response times", 2017). So the default delay
is a lognormal with a median of 45 s and a p99 of 15 min
(``DEFAULT_DELAY_MEDIAN_S``, ``DEFAULT_DELAY_P99_S``; its mean is about 100 s);
``delay_median_s`` and ``delay_p99_s`` set another, ``delay_s`` a fixed one
(tests that want replies at once say ``delay_s = 0``).

The reply goes to ``inbound_url``: an ``{provider}`` in it is filled in;
without one it is the base that ``/webhooks/{provider}/inbound`` is appended
to. Unset, the base is the part of the text's receipt URL before
``/webhooks/`` (its origin when there is none): a simulator convention, as
real accounts set the inbound URL per number or profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from worker.simulator.carriers import CARRIERS
from worker.simulator.draws import check_lognormal, lognormal_s, unit

ReplyKind = Literal["ordinary", "stop", "possible", "help", "start"]
REPLY_KINDS: tuple[ReplyKind, ...] = get_args(ReplyKind)
# Replies after which a person must not be texted again (and says nothing more).
OPT_OUT_KINDS: frozenset[str] = frozenset({"stop", "possible"})
VonageMethod = Literal["GET", "POST", "POST-JSON"]

# A human's reply: a lognormal, median 45 s, p99 15 min (the module's docstring).
DEFAULT_DELAY_MEDIAN_S = 45.0
DEFAULT_DELAY_P99_S = 900.0
MAX_DELAY_S = 3600.0
MAX_BODY_CHARS = 1600
DEFAULT_KINDS: dict[ReplyKind, float] = {
    "ordinary": 0.80,
    "stop": 0.12,
    "possible": 0.05,
    "help": 0.02,
    "start": 0.01,
}
# Real keywords in the forms people type them: case, spaces, trailing punctuation.
DEFAULT_BODIES: dict[ReplyKind, tuple[str, ...]] = {
    "ordinary": (
        "Thanks!",
        "Who is this?",
        "Already voted",
        "ok",
        "Will do 👍",
        "What time is the rally?",
        "Can you send me the address?",
    ),
    "stop": (
        "STOP",
        "Stop.",
        " stop ",
        "UNSUBSCRIBE",
        "stop all",
        "STOP!!",
        "Cancel",
        "end",
        "Quit",
        "OPT OUT",
        "stopall",
        "Revoke",
        "optout",
    ),
    "possible": (
        "please stop texting me",
        "remove me",
        "wrong number",
        "stpo",
        "Remove me from your list",
        "Don't text me again",
        "take me off this list",
    ),
    "help": ("HELP", "help", "Help"),
    "start": ("START", "Start", "UNSTOP"),
}


@dataclass(frozen=True, slots=True)
class Decision:
    kind: ReplyKind
    body: str
    delay_s: float


class ReplySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(0.0, ge=0, le=1)
    delay_s: float | None = Field(None, ge=0, le=MAX_DELAY_S)
    delay_median_s: float | None = Field(None, gt=0, le=MAX_DELAY_S)
    delay_p99_s: float | None = Field(None, gt=0, le=MAX_DELAY_S)
    seed: int = 0
    per: Literal["text", "handset"] = "text"
    from_s: float = Field(0.0, ge=0)
    until_s: float | None = Field(None, gt=0)
    body_contains: str | None = Field(None, min_length=1)
    kinds: dict[ReplyKind, float] = Field(default_factory=lambda: dict(DEFAULT_KINDS))
    bodies: dict[ReplyKind, list[str]] = Field(default_factory=dict)
    carriers: dict[str, float] = Field(default_factory=dict)
    inbound_url: str | None = None
    vonage_method: VonageMethod = "GET"
    stop_confirmations: list[str] = Field(default_factory=list)

    @field_validator("kinds")
    @classmethod
    def _weights(cls, kinds: dict[ReplyKind, float]) -> dict[ReplyKind, float]:
        for kind, weight in kinds.items():
            if not (weight >= 0 and math.isfinite(weight)):
                raise ValueError(f"{kind}: a weight is a number >= 0, not {weight!r}")
        if not any(kinds.values()):
            raise ValueError("at least one kind needs a weight above 0")
        return kinds

    @field_validator("bodies")
    @classmethod
    def _bodies(cls, bodies: dict[ReplyKind, list[str]]) -> dict[ReplyKind, list[str]]:
        for kind, texts in bodies.items():
            if not texts:
                raise ValueError(f"{kind}: give at least one body")
            for text in texts:
                if not text.strip() or len(text) > MAX_BODY_CHARS:
                    raise ValueError(f"{kind}: a body is 1 to {MAX_BODY_CHARS} characters")
        return bodies

    @field_validator("carriers")
    @classmethod
    def _carriers(cls, rates: dict[str, float]) -> dict[str, float]:
        for carrier, rate in rates.items():
            if carrier not in CARRIERS:
                raise ValueError(
                    f"unknown carrier {carrier!r}; expected one of {', '.join(CARRIERS)}"
                )
            if not 0 <= rate <= 1:
                raise ValueError(f"{carrier}: a reply rate is between 0 and 1, not {rate!r}")
        return rates

    @field_validator("inbound_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not (
            url.startswith(("http://", "https://")) and urlsplit(url).netloc
        ):
            raise ValueError(f"an http(s) URL with a host, not {url!r}")
        return url

    @field_validator("stop_confirmations")
    @classmethod
    def _confirmations(cls, bodies: list[str]) -> list[str]:
        if any(not body for body in bodies):
            raise ValueError("a confirmation body must not be empty")
        return bodies

    @model_validator(mode="after")
    def _coherent(self) -> ReplySettings:
        check_lognormal(self.delay_s, self.delay_median_s, self.delay_p99_s, prefix="")
        if self.until_s is not None and self.until_s <= self.from_s:
            raise ValueError(f"until_s ({self.until_s}) must be after from_s ({self.from_s})")
        return self

    # -- decisions -----------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether any handset can reply at all (the engine skips everything when not)."""
        return self.rate > 0 or any(rate > 0 for rate in self.carriers.values())

    def eligible(self, body: str, t: float) -> bool:
        """Whether a text that arrived at ``t`` (scenario clock) may be answered at all."""
        if t < self.from_s or (self.until_s is not None and t >= self.until_s):
            return False
        return self.body_contains is None or self.body_contains in body

    def decide(self, to: str, body: str, carrier: str) -> Decision | None:
        """The reply to an eligible text that reached ``to``, if any: the same every time."""
        rate = self.carriers.get(carrier, self.rate)
        key = to if self.per == "handset" else f"{to}\x00{body}"
        if rate <= 0 or self._unit("reply", key) >= rate:
            return None
        kind = self._kind(self._unit("kind", key))
        bodies = self.bodies.get(kind) or DEFAULT_BODIES[kind]
        said = bodies[int(self._unit("body", key) * len(bodies))]
        return Decision(kind, said, self._delay_s(self._unit("delay", key)))

    def is_confirmation(self, body: str) -> bool:
        """Whether ``body`` is sendq's (exempt) answer to an opt-out."""
        return any(confirmation in body for confirmation in self.stop_confirmations)

    def _unit(self, salt: str, key: str) -> float:
        """A stable number in [0, 1) for (seed, salt, key): the same run, the same draws."""
        return unit(self.seed, salt, key)

    def _kind(self, u: float) -> ReplyKind:
        weighted = [(kind, weight) for kind, weight in self.kinds.items() if weight > 0]
        point = u * sum(weight for _, weight in weighted)
        for kind, weight in weighted:
            point -= weight
            if point < 0:
                return kind
        return weighted[-1][0]  # u * total rounded up to the total

    def _delay_s(self, u: float) -> float:
        if self.delay_s is not None:
            return self.delay_s
        median_s = self.delay_median_s or DEFAULT_DELAY_MEDIAN_S
        p99_s = self.delay_p99_s or DEFAULT_DELAY_P99_S
        return lognormal_s(u, median_s, p99_s, MAX_DELAY_S)


def inbound_url(
    configured: str | None, receipt_url: str | None, fallback: str, provider: str
) -> str:
    """Where a reply through ``provider`` is posted (see the module's docstring)."""
    if configured is not None and "{provider}" in configured:
        return configured.replace("{provider}", provider)
    base = configured or _base_of(receipt_url) or fallback
    return f"{base.rstrip('/')}/webhooks/{provider}/inbound"


def _base_of(url: str | None) -> str | None:
    """The part of a receipt URL before ``/webhooks/``, else its origin."""
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    prefix = parts.path.partition("/webhooks/")[0] if "/webhooks/" in parts.path else ""
    return f"{parts.scheme}://{parts.netloc}{prefix}"
