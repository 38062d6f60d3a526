"""A campaign's quiet-hours policy: a pure function of (number, now).

Which zones count, for a number phonenumbers places in several:

    "strictest" (the default)  the text goes only when every candidate zone
                               allows it. A wrong guess under "campaign" texts
                               someone at 7 a.m. or 10 p.m. their time; under
                               "strictest" it costs at most a few hours' wait.
                               Honouring the recipient's night is the promise
                               (DESIGN.md, promise 7), so waiting is the default.
    "campaign"                 the campaign's ``time_zone`` when it is one of the
                               candidates (an operator who knows the audience),
                               else strictest.

A number phonenumbers cannot place at all gets the campaign's ``time_zone`` if
it has one, else every zone of its country, strictest: without a zone there is
no telling it is not 3 a.m. where the phone is, and the one safe reading is the
one that is daytime everywhere the number could be.

When no moment in the next 8 days is allowed in all candidate zones at once
(zones too far apart for the window), the decision is ``never``: the gate ends
the text with that reason rather than hold it forever or guess a zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from worker.quiet import schedule, states, zones
from worker.quiet.schedule import Constraint
from worker.quiet.window import WEEKDAYS, Window, clock_time, parse_window

ZonePolicy = Literal["strictest", "campaign"]
ZONE_POLICIES: tuple[ZonePolicy, ...] = ("strictest", "campaign")


class NoOpening(ValueError):
    """No time in the horizon is allowed for the number: its zones are too far apart."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Allowed now (``until_ms`` None), held until ``until_ms``, or ``never`` allowed."""

    until_ms: int | None = None
    reason: str = ""
    never: bool = False

    @property
    def allowed(self) -> bool:
        return self.until_ms is None and not self.never


ALLOWED = Decision()


@dataclass(frozen=True, slots=True)
class Rules:
    """What applies to one number: its zones, its state's rule, the constraints."""

    key: tuple[tuple[str, ...], str | None]  # (zones, state)
    zones_from: str  # how the zones were chosen, for reasons
    constraints: tuple[Constraint, ...]

    @property
    def zones(self) -> tuple[str, ...]:
        return self.key[0]

    @property
    def state(self) -> str | None:
        return self.key[1]


class CampaignQuietSettings(Protocol):
    """The fields of ``[campaigns.NAME]`` (worker.settings.CampaignSettings) used here."""

    @property
    def quiet_hours(self) -> str | None: ...
    @property
    def quiet_zone_policy(self) -> str: ...
    @property
    def time_zone(self) -> str | None: ...
    @property
    def state_rules(self) -> bool: ...


class QuietPolicy:
    """``decide(number, now_ms)``: allowed now, or held until the window next opens."""

    def __init__(
        self,
        window: Window | str,
        zone_policy: str = "strictest",
        campaign_zone: str | None = None,
        state_rules: bool = True,
        horizon_s: int = schedule.HORIZON_S,
    ) -> None:
        if zone_policy not in ZONE_POLICIES:
            raise ValueError(f"quiet_zone_policy {zone_policy!r} is not one of {ZONE_POLICIES}")
        if campaign_zone is not None and not zones.known_zone(campaign_zone):
            raise ValueError(f"unknown time zone {campaign_zone!r} (an IANA name)")
        self.window = parse_window(window) if isinstance(window, str) else window
        self.zone_policy = zone_policy
        self.campaign_zone = campaign_zone
        self.state_rules = state_rules
        self.horizon_s = horizon_s
        self._window_hours = self.window.allowed_hours()
        self._rules: dict[tuple[tuple[str, ...], str | None], Rules] = {}
        # Per rule set, a stretch [from_s, opening) known to be quiet throughout, and
        # its decision: a backlog arriving at night computes its opening once, not per
        # text. The reason stays true through the stretch (its rule opens at the opening).
        self._quiet: dict[tuple[tuple[str, ...], str | None], tuple[int, Decision]] = {}

    @classmethod
    def from_settings(cls, campaign: CampaignQuietSettings) -> QuietPolicy | None:
        """The campaign's policy, or None when it has no quiet hours."""
        if not campaign.quiet_hours:
            return None
        return cls(
            campaign.quiet_hours,
            campaign.quiet_zone_policy,
            campaign.time_zone,
            campaign.state_rules,
        )

    def __repr__(self) -> str:
        return (
            f"QuietPolicy({str(self.window)!r}, {self.zone_policy!r}, "
            f"{self.campaign_zone!r}, state_rules={self.state_rules})"
        )

    def _zones(self, place: zones.Placement) -> tuple[tuple[str, ...], str]:
        if not place.zones:
            if self.campaign_zone:
                return (self.campaign_zone,), "the campaign's time_zone"
            return place.country_zones, f"every zone of {place.region or 'its country'}"
        if self.zone_policy == "campaign" and self.campaign_zone in place.zones:
            return (self.campaign_zone,), "the campaign's time_zone"
        return place.zones, "phonenumbers"

    def rules_for(self, number_e164: str) -> Rules:
        """The zones and rules that apply to a number (cached by zones and state)."""
        chosen, zones_from = self._zones(zones.place(number_e164))
        state = states.state_of(number_e164) if self.state_rules else None
        key = (chosen, state)
        found = self._rules.get(key)
        if found is None:
            found = self._rules[key] = self._build(key, zones_from)
        return found

    def _build(self, key: tuple[tuple[str, ...], str | None], zones_from: str) -> Rules:
        chosen, state = key
        label = f"quiet hours {self.window}"
        constraints = [Constraint(ZoneInfo(z), self._window_hours, label) for z in chosen]
        rule = states.STATE_RULES.get(state) if state else None
        if rule is not None and chosen:
            label = f"{rule.name} state hours"
            constraints += [Constraint(ZoneInfo(z), rule.hours, label) for z in chosen]
            if rule.fixed_zone:
                zone = ZoneInfo(rule.fixed_zone)
                constraints.append(Constraint(zone, rule.hours, label, rule.fixed_zone_name))
        return Rules(key, zones_from, tuple(constraints))

    def decide(self, number_e164: str, now_ms: int) -> Decision:
        rules = self.rules_for(number_e164)
        if not rules.constraints:
            return Decision(never=True, reason="quiet hours: the number's time zone is unknown")
        now_s = now_ms // 1000
        stretch = self._quiet.get(rules.key)
        if stretch is not None and stretch[0] <= now_s and now_ms < (stretch[1].until_ms or 0):
            return stretch[1]
        if schedule.allows(rules.constraints, now_s):
            return ALLOWED
        opening = schedule.next_opening(rules.constraints, now_s, self.horizon_s)
        if opening is None:
            days = self.horizon_s // schedule.DAY_S
            return Decision(
                never=True,
                reason=f"quiet hours: no time in {days} days is allowed in all "
                f"{len(rules.zones)} zones the number may be in ({rules.zones_from})",
            )
        held = Decision(opening * 1000, _reason(rules, now_s, opening))
        self._quiet[rules.key] = (now_s, held)
        return held

    def next_allowed_ms(self, number_e164: str, now_ms: int) -> int | None:
        """None when a text may go now, else when it next may; NoOpening if never."""
        decision = self.decide(number_e164, now_ms)
        if decision.never:
            raise NoOpening(decision.reason)
        return decision.until_ms

    def allows(self, number_e164: str, at_ms: int) -> bool:
        """Whether every rule allows a text at ``at_ms``, judged afresh (no stretch cache)."""
        rules = self.rules_for(number_e164)
        return bool(rules.constraints) and schedule.allows(rules.constraints, at_ms // 1000)


def _reason(rules: Rules, now_s: int, opening_s: int) -> str:
    """ "quiet hours 21:00-08:00 in America/Chicago until 08:00": a rule that opens last.

    That is a rule still closed the second before the opening (some is: the whole
    stretch is quiet), so the time named is its own opening; of those, one closed
    now too (at 8:30 p.m. in New Jersey, the state's hours rather than the window).
    """
    last = [c for c in rules.constraints if not c.allows(opening_s - 1)] or [rules.constraints[0]]
    binding = next((c for c in last if not c.allows(now_s)), last[0])
    local = binding.local(opening_s)
    when = clock_time(local.hour * 3600 + local.minute * 60 + local.second)
    if opening_s - now_s >= schedule.DAY_S:
        when = f"{WEEKDAYS[local.weekday()]} {when}"
    return f"{binding.label} in {binding.place} until {when}"


def local_time_ok(number_e164: str, at_ms: int, policy: QuietPolicy) -> bool:
    """For tests and benchmarks: a text to the number at ``at_ms`` kept the policy."""
    return policy.allows(number_e164, at_ms)


def policies_from_settings(
    campaigns: Mapping[str, CampaignQuietSettings],
) -> dict[str, QuietPolicy]:
    """One policy per campaign that has quiet hours (the gate lets the others go)."""
    out: dict[str, QuietPolicy] = {}
    for name, campaign in campaigns.items():
        policy = QuietPolicy.from_settings(campaign)
        if policy is not None:
            out[name] = policy
    return out
