"""The simulated providers and carriers, without HTTP: what happens to each send.

``Simulator.send(dialect, request)`` takes a send any provider's dialect has
read and returns that dialect's ``Outcome`` (HTTP status, JSON body,
headers). It knows no provider by name; every send takes the same steps:

    throttle (the provider's MPS) -> fields valid? -> To valid? -> scenario fate
    (fault, sync rejection, or a carrier filter) -> handset inbox and the
    provider's message log -> receipt scheduled -> the dialect's success answer
    -> held or dropped, if an answer rule says so (the text stays taken)

A text that reached its handset may get a reply (``handsets``: the scenario's
``[replies]``), posted to sendq's inbound route later, never in the send's path.

The web layer only parses and answers, so this is where throttling, scenario
rules, inboxes and receipts meet.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from worker.phone import count_segments
from worker.simulator.carriers import carrier_of
from worker.simulator.config import SimulatorConfig, default_public_url
from worker.simulator.dialect import RETRY_AFTER_S, Dialect, Outcome, SendRequest
from worker.simulator.handsets import Handsets
from worker.simulator.inbound import InboundShapes
from worker.simulator.inbox import Inboxes, Text
from worker.simulator.receipts import ReceiptPoster
from worker.simulator.scenario import PROVIDERS, Rule, Scenario
from worker.simulator.sent import Sent, SentLog
from worker.simulator.throttle import Throttle

__all__ = ["Counters", "Outcome", "ProviderCounters", "Simulator", "Throttle"]

# A rule that hangs but names no status answers this one when it finally does.
DEFAULT_HANG_STATUS = 503


@dataclass(slots=True)
class ProviderCounters:
    requests: int = 0
    accepted: int = 0
    rejected_sync: int = 0
    rejected_invalid: int = 0
    throttled_429: int = 0
    faulted: int = 0
    # Requests cut off (main port) or connections cut (a gate closing) by refuse rules.
    refused: int = 0
    unauthorized: int = 0
    # Accepted texts whose answer was dropped, or held by delay_s (drop rules with
    # a delay_s count in both).
    dropped: int = 0
    delayed: int = 0


def _by_provider() -> dict[str, ProviderCounters]:
    return {name: ProviderCounters() for name in PROVIDERS}


@dataclass(slots=True)
class Counters:
    requests: int = 0
    accepted: int = 0
    rejected_sync: int = 0
    rejected_invalid: int = 0
    throttled_429: int = 0
    faulted: int = 0
    filtered: int = 0
    dropped: int = 0
    delayed: int = 0
    by_provider: dict[str, ProviderCounters] = field(default_factory=_by_provider)


class Simulator:
    def __init__(
        self,
        config: SimulatorConfig,
        receipts: ReceiptPoster,
        replies: ReceiptPoster | None = None,
        dialects: Sequence[Dialect] = (),
    ) -> None:
        self.config = config
        self.receipts = receipts
        self.inboxes = Inboxes()
        # What each provider took, for its look-up API (Twilio's Message list).
        self.sent = SentLog()
        # Replies go through a poster of their own (started by the app, like receipts).
        self.replies = replies or ReceiptPoster(workers=config.reply_workers, post_stale=False)
        self.handsets = Handsets(
            InboundShapes(config),
            self.replies,
            self.inboxes,
            self.sent,
            inbound_url=config.inbound_url,
            fallback_url=default_public_url(),
        )
        # Dialects told of each new scenario (Twilio's SharedKey signing).
        self._dialects = tuple(dialects)
        self.counters = Counters()
        self.throttle = Throttle()
        self.epoch = time.monotonic()
        self.callback_urls = dict(config.callback_urls)
        self.scenario = config.scenario

    @property
    def scenario(self) -> Scenario:
        return self._scenario

    @scenario.setter
    def scenario(self, scenario: Scenario) -> None:
        # Worked out once per scenario, not on every send.
        self._scenario = scenario
        self._limits = {name: scenario.limits(name) for name in PROVIDERS}
        self._refusals = scenario.refusals()
        # Read on every request (app.py): a plain attribute is the cheapest check.
        self.has_refusals = bool(self._refusals)
        self._rng = scenario.rng()
        self.handsets.use(scenario)
        self._replying = self.handsets.enabled
        for dialect in self._dialects:
            dialect.use_scenario(scenario)

    def clock(self) -> float:
        """Seconds on the scenario clock: since start or the last reset."""
        return time.monotonic() - self.epoch

    def reset(self) -> None:
        self.epoch = time.monotonic()
        self.inboxes.clear()
        self.sent.clear()
        self._rng = self._scenario.rng()
        self.counters = Counters()
        self.throttle.reset()
        self.receipts.reset()
        self.handsets.reset()

    # -- connections -------------------------------------------------------------------

    def refusing(self, provider: str) -> bool:
        """Whether a refuse rule is closing ``provider``'s connections right now."""
        if not self._refusals:
            return False
        t = self.clock()
        return any(
            rule.in_window(t) and rule.provider in (None, provider) for rule in self._refusals
        )

    def count_refused(self, provider: str, n: int = 1) -> None:
        self.counters.by_provider[provider].refused += n

    def unparsed(self, dialect: Dialect, outcome: Outcome) -> None:
        """Count a request the dialect could not take (bad credentials, unreadable body)."""
        counts = self.counters.by_provider[dialect.name]
        if outcome.auth_failed:
            counts.unauthorized += 1
            return
        counts.requests += 1
        counts.rejected_invalid += 1
        self.counters.requests += 1
        self.counters.rejected_invalid += 1

    # -- sends -------------------------------------------------------------------------

    def send(self, dialect: Dialect, request: SendRequest) -> Outcome:
        totals = self.counters
        counts = totals.by_provider[dialect.name]
        totals.requests += 1
        counts.requests += 1
        account_mps, number_mps = self._limits[dialect.name]
        if not self.throttle.admit(
            dialect.name, request.account, request.sender, account_mps, number_mps
        ):
            totals.throttled_429 += 1
            counts.throttled_429 += 1
            return dialect.throttled(RETRY_AFTER_S)
        invalid = dialect.invalid(request)
        if invalid is None:
            parsed = _parse_to(request.to)
            if parsed is not None:
                to, region = parsed
                return self._route(dialect, request, to, carrier_of(to, region))
            invalid = dialect.invalid_to(request)
        totals.rejected_invalid += 1
        counts.rejected_invalid += 1
        return invalid

    def _route(self, dialect: Dialect, request: SendRequest, to: str, carrier: str) -> Outcome:
        name, body, scenario = dialect.name, request.body, self._scenario
        t = self.clock()
        totals = self.counters
        counts = totals.by_provider[name]
        code = None
        # Drawn once per request, for every pass: a rule's share covers the same sends.
        draws = scenario.draw(self._rng) if scenario.rules else ()
        rule = scenario.fate(t, carrier, to, body, name, draws) if scenario.rules else None
        if rule is not None:
            if rule.is_fault:
                totals.faulted += 1
                counts.faulted += 1
                return _fault(dialect, rule)
            code = _code(dialect, rule)
            if rule.mode == "sync":
                totals.rejected_sync += 1
                counts.rejected_sync += 1
                return dialect.rejected(code)
        text = Text(dialect.new_id(), to, request.sender, body, carrier, time.time(), name)
        segments = count_segments(body)
        self._take(dialect, request, text, code, segments, t, draws)
        outcome = dialect.accepted(text, request, segments)
        answer = scenario.answer(t, carrier, to, body, name, draws) if scenario.rules else None
        return outcome if answer is None else self._shape(outcome, answer, counts)

    def _take(
        self,
        dialect: Dialect,
        request: SendRequest,
        text: Text,
        code: str | None,
        segments: int,
        t: float,
        draws: tuple[float, ...],
    ) -> None:
        """The provider has the text: the handset (or its carrier's filter), the log, a receipt."""
        totals = self.counters
        counts = totals.by_provider[dialect.name]
        totals.accepted += 1
        counts.accepted += 1
        if code:
            totals.filtered += 1
            self.inboxes.filtered(text.carrier, dialect.name)
        else:
            self.inboxes.deliver(text)
        sent = Sent(text, request.account, segments, code)
        self.sent.record(sent)
        url = request.callback or self.callback_urls.get(dialect.name)
        if self._scenario.receipts:
            delay = self._scenario.receipt_delay_s(
                t, text.carrier, text.to, text.body, dialect.name, draws
            )
            if self._schedule_receipts(dialect, request, text, url, code, segments, delay):
                sent.final_at = text.at + delay
        if self._replying and not code:  # a filtered text never reaches the person
            self.handsets.received(dialect, request, text, url, t)

    def _shape(self, outcome: Outcome, rule: Rule, counts: ProviderCounters) -> Outcome:
        """Hold and/or drop an accepted text's answer, as the rule says."""
        if rule.delay_s is not None:
            outcome.hang_s = rule.delay_s
            self.counters.delayed += 1
            counts.delayed += 1
        if rule.drop is not None:
            outcome.drop = rule.drop
            self.counters.dropped += 1
            counts.dropped += 1
        return outcome

    def _schedule_receipts(
        self,
        dialect: Dialect,
        request: SendRequest,
        text: Text,
        url: str | None,
        code: str | None,
        segments: int,
        delay_s: float,
    ) -> bool:
        """Schedule the text's receipts to ``url``; False when there is nowhere to post them."""
        if not url:
            return False  # nowhere to send it, as with a provider given no callback
        for build in dialect.receipts(text, request, url, code, segments):
            self.receipts.schedule(build, delay_s)
        return True

    # -- report ------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        c, inboxes, receipts = self.counters, self.inboxes, self.receipts
        return {
            "t": round(self.clock(), 3),
            "requests": c.requests,
            "accepted": c.accepted,
            "rejected_sync": c.rejected_sync,
            "rejected_invalid": c.rejected_invalid,
            "throttled_429": c.throttled_429,
            "faulted": c.faulted,
            "filtered": c.filtered,
            "dropped": c.dropped,
            "delayed": c.delayed,
            "delivered_to_handsets": inboxes.delivered,
            "unique_texts": inboxes.unique,
            "doubled": inboxes.doubled,
            "texts_doubled": inboxes.texts_doubled,
            "receipts_sent": receipts.sent,
            "receipts_failed": receipts.failed,
            "receipts_pending": receipts.pending,
            "replies": self.handsets.summary(),
            "by_carrier": {
                name: {"delivered": n.delivered, "filtered": n.filtered, "doubled": n.doubled}
                for name, n in inboxes.by_carrier.items()
            },
            "by_provider": {name: self._provider_report(name) for name in PROVIDERS},
        }

    def _provider_report(self, name: str) -> dict[str, int]:
        report = dataclasses.asdict(self.counters.by_provider[name])
        inbox = self.inboxes.by_provider.get(name)
        report["filtered"] = inbox.filtered if inbox else 0
        report["delivered"] = inbox.delivered if inbox else 0
        report["doubled"] = inbox.doubled if inbox else 0
        return report


def _code(dialect: Dialect, rule: Rule) -> str:
    """The rule's literal code, else its category in the dialect's codes."""
    if rule.error_code:
        return rule.error_code
    assert rule.error is not None, "fate() returns only rules with an error or a fault"
    return dialect.code_for(rule.error, sync=rule.mode == "sync")


def _fault(dialect: Dialect, rule: Rule) -> Outcome:
    code = rule.error_code
    if code is None and rule.error is not None:
        code = dialect.code_for(rule.error, sync=True)
    outcome = dialect.fault(rule.http_status or DEFAULT_HANG_STATUS, code)
    return dataclasses.replace(outcome, hang_s=rule.hang_s) if rule.hang else outcome


def _parse_to(raw: str) -> tuple[str, str] | None:
    """(E.164, region) of a valid number, else None; one parse serves both checks."""
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    if region is None or not phonenumbers.is_valid_number_for_region(number, region):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), region
