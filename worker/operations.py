"""Operator actions on breakers: pause, resume, status and history, for carriers and providers.

The CLI (``sendq carriers|providers ...``) and the admin API are thin callers of this
module, so an operator's action means the same thing from either.

Which breakers an action touches (the targeting rule):

- carrier names are normalised first (``Verizon Wireless`` -> ``verizon``);
- pause without a campaign: the carrier-wide breaker (``verizon:*``) only. Its pause
  already holds every campaign of the carrier, new ones too, and leaves each campaign
  breaker's own state (and audit trail) alone;
- pause or resume with a campaign: that campaign's breaker only;
- resume without a campaign: the carrier-wide breaker and every campaign breaker of
  the carrier known so far. "Resume verizon" means every verizon text may go again,
  whichever breaker held it;
- a provider must be a known one; the error names the input and the known names;
- a pause needs a reason (it is the audit record's and the alert's "why").

Nothing here talks to Redis directly (only through ``Breakers`` and ``Holds``), and
nothing here announces on its own: each action returns an ``Outcome``, and the caller
chooses how to announce it. A short-lived command waits a bounded time for its alert
(:meth:`Operations.announce_now`); a server posts in the background
(:meth:`Operations.announce`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from worker.alerts import Alerter, announce_now
from worker.breaker import Breakers, Decision
from worker.carriers import normalise
from worker.errors import MissingReason, UnknownProvider
from worker.exposure import Exposure
from worker.holds import ALL_CAMPAIGNS, Holds, breaker_name, split_name

DEFAULT_RESUME_REASON = "resumed by operator"
DEFAULT_HISTORY_COUNT = 50


@dataclass(frozen=True, slots=True)
class Change:
    """One breaker an action touched, and what the breaker answered."""

    name: str
    decision: Decision

    @property
    def state(self) -> str:
        return self.decision.state.value

    @property
    def changed(self) -> bool:
        # For pause and resume, breaker.lua's "allowed" means "the state changed".
        return self.decision.allowed

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "changed": self.changed}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one operator action: every breaker it touched, who and why."""

    kind: str
    who: str
    why: str
    changes: tuple[Change, ...]

    @property
    def transitions(self) -> list[tuple[str, str]]:
        """``(name, "from>to")`` of each breaker that really changed: what is announced."""
        return [(c.name, c.decision.transition) for c in self.changes if c.decision.transition]


def _known_providers() -> tuple[str, ...]:
    from worker.settings import PROVIDER_NAMES

    return tuple(PROVIDER_NAMES)


class Operations:
    """Pause, resume, status and history of carrier and provider breakers."""

    def __init__(
        self,
        *,
        carriers: Breakers,
        providers: Breakers,
        holds: Holds,
        alert_urls: Sequence[str],
        provider_names: Sequence[str],
        known_providers: Sequence[str] | None = None,
        exposure: Exposure | None = None,
    ) -> None:
        # A resumed carrier starts small again (the exposure limit's slow start).
        self.exposure = exposure if exposure is not None and exposure.enabled else None
        self.carriers = carriers
        self.providers = providers
        self.holds = holds
        self.alert_urls = list(alert_urls)
        # The routed providers are listed by status even before their breaker
        # has a record; any known provider may be paused, routed or not.
        self.provider_names = list(provider_names)
        self.known_providers = tuple(known_providers or _known_providers())
        self._alerter: Alerter | None = None

    # -- targeting ---------------------------------------------------------

    def carrier_targets(self, carrier: str, campaign: str | None, *, resume: bool) -> list[str]:
        """The breakers an action on ``carrier`` (and ``campaign``) touches: the rule above."""
        carrier = normalise(carrier)
        if campaign:
            return [breaker_name(carrier, campaign)]
        wide = breaker_name(carrier, ALL_CAMPAIGNS)
        if not resume:
            return [wide]
        return list(dict.fromkeys([wide, *self._campaign_breakers(carrier)]))

    def _campaign_breakers(self, carrier: str) -> list[str]:
        return [n for n in self.carriers.names() if split_name(n)[0] == carrier]

    def _provider(self, name: str) -> str:
        if name not in self.known_providers:
            raise UnknownProvider(name, self.known_providers)
        return name

    # -- carriers ----------------------------------------------------------

    def pause_carrier(
        self, carrier: str, *, reason: str, who: str, campaign: str | None = None
    ) -> Outcome:
        _require_reason(reason)
        targets = self.carrier_targets(carrier, campaign, resume=False)
        changes = tuple(Change(t, self.carriers.pause(t, who=who, reason=reason)) for t in targets)
        return Outcome("carrier", who, reason, changes)

    def resume_carrier(
        self, carrier: str, *, who: str, reason: str = "", campaign: str | None = None
    ) -> Outcome:
        reason = reason or DEFAULT_RESUME_REASON
        targets = self.carrier_targets(carrier, campaign, resume=True)
        changes = tuple(Change(t, self.carriers.resume(t, who=who, reason=reason)) for t in targets)
        if self.exposure is not None:
            for name in self._exposure_names(targets):
                self.exposure.reset(name)
        return Outcome("carrier", who, reason, changes)

    def _exposure_names(self, targets: Sequence[str]) -> list[str]:
        """The exposure limits a resume reaches: ``carrier:*`` is every campaign's."""
        assert self.exposure is not None
        known = self.exposure.names()
        out: list[str] = []
        for target in targets:
            carrier, campaign = split_name(target)
            out += [
                n
                for n in known
                if n == target or (campaign == ALL_CAMPAIGNS and n.startswith(f"{carrier}:"))
            ]
        return list(dict.fromkeys(out))

    def carrier_status(self) -> list[dict[str, Any]]:
        """Every carrier x campaign breaker known, with its held texts."""
        names = self.carriers.names()
        held = self.holds.counts(names) if names else {}
        return [self.carriers.status(name) | {"held": held[name]} for name in names]

    def carrier_history(
        self, name: str, count: int = DEFAULT_HISTORY_COUNT
    ) -> list[dict[str, str]]:
        """Transitions of ``carrier:campaign``, or of every breaker of ``carrier``; newest first."""
        names = [name] if ":" in name else self.carrier_targets(name, None, resume=True)
        return _newest_first((e for n in names for e in self.carriers.history(n, count)), count)

    # -- providers ---------------------------------------------------------

    def pause_provider(self, name: str, *, reason: str, who: str) -> Outcome:
        self._provider(name)
        _require_reason(reason)
        decision = self.providers.pause(name, who=who, reason=reason)
        return Outcome("provider", who, reason, (Change(name, decision),))

    def resume_provider(self, name: str, *, who: str, reason: str = "") -> Outcome:
        self._provider(name)
        reason = reason or DEFAULT_RESUME_REASON
        decision = self.providers.resume(name, who=who, reason=reason)
        return Outcome("provider", who, reason, (Change(name, decision),))

    def provider_status(self, *, with_routed: bool = True) -> list[dict[str, Any]]:
        """Each provider breaker known; ``with_routed`` adds routed ones not yet recorded."""
        known = self.providers.names()
        names = list(dict.fromkeys([*self.provider_names, *known])) if with_routed else known
        return [self.providers.status(name) for name in names]

    def provider_history(
        self, name: str, count: int = DEFAULT_HISTORY_COUNT
    ) -> list[dict[str, str]]:
        return self.providers.history(self._provider(name), count)

    # -- announcing --------------------------------------------------------

    def announce_now(self, outcome: Outcome, *, source: str) -> bool:
        """Log and post the outcome's alerts, waiting at most ``alerts.DEFAULT_FLUSH_S``.

        For a process about to exit. True if every alert was delivered (or none was due).
        """
        if not outcome.transitions:
            return True
        return announce_now(
            self.alert_urls,
            outcome.kind,
            outcome.transitions,
            outcome.why,
            by=outcome.who,
            source=source,
        )

    def announce(self, outcome: Outcome, *, source: str) -> None:
        """Log now and post in the background: needs a running event loop when URLs are set."""
        if self._alerter is None:
            self._alerter = Alerter(self.alert_urls)
        for name, transition in outcome.transitions:
            self._alerter.announce(
                outcome.kind, name, transition, outcome.why, by=outcome.who, source=source
            )


def _require_reason(reason: str) -> None:
    if not reason.strip():
        raise MissingReason()


def _newest_first(entries: Iterable[dict[str, str]], count: int) -> list[dict[str, str]]:
    # Audit ids are stream ids, "<ms>-<seq>": in number order, the order of the changes.
    def order(entry: dict[str, str]) -> tuple[int, ...]:
        return tuple(int(part) for part in entry["id"].split("-"))

    return sorted(entries, key=order, reverse=True)[:count]
