"""The simulated providers and carriers, without HTTP: what happens to each send.

``Simulator.send(dialect, request)`` takes a send any provider's dialect has
read and returns that dialect's ``Outcome`` (HTTP status, JSON body,
headers). It knows no provider by name; every send takes the same steps:

    throttle (the provider's MPS) -> fields valid? -> To valid? -> scenario fate
    (fault, sync rejection, or a carrier filter) -> quiet fate (a silent drop,
    or a cut by deliver_share; rules.py) -> handset inbox and the provider's
    message log -> receipt scheduled (unless a rule suppresses it) -> the
    dialect's success answer -> held or dropped, if an answer rule says so (the
    text stays taken)

A text that reached its handset may get a reply (``handsets``: the scenario's
``[replies]``), posted to sendq's inbound route later, never in the send's path;
a filtered, silently dropped or cut text never reaches it, so never gets one.
Every accepted text is also logged per carrier (carrier_log.py), with its time,
fate and receipt, for ``/sim/carriers``.

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
from worker.simulator.carrier_log import CarrierLog, CarrierTally, Fate, ReceiptFate
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
    # Quiet filtering (rules.py): "delivered" but dropped; cut by deliver_share;
    # accepted texts whose receipts a rule (or the scenario) suppressed.
    silently_dropped: int = 0
    undelivered_by_cut: int = 0
    receipts_suppressed: int = 0


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
    silently_dropped: int = 0
    undelivered_by_cut: int = 0
    receipts_suppressed: int = 0
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
        # Each accepted text's carrier, time, fate and receipt.
        self.carriers = CarrierLog()
        self.throttle = Throttle()
        self.epoch = time.monotonic()
        # The scenario clock's 0 in Unix time, for /sim/carriers' after_s.
        self.started_at = time.time()
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
        self.started_at = time.time()
        self.inboxes.clear()
        self.sent.clear()
        self.carriers.clear()
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
        code, fate = None, Fate.HANDSET
        # Drawn once per request, for every pass: a rule's share covers the same sends.
        draws = scenario.draw(self._rng) if scenario.rules else ()
        rule = scenario.fate(t, carrier, to, body, name, draws) if scenario.rules else None
        if rule is not None:
            if rule.is_fault:
                totals.faulted += 1
                counts.faulted += 1
                return _fault(dialect, rule)
            code, fate = _code(dialect, rule), Fate.FILTERED
            if rule.mode == "sync":
                totals.rejected_sync += 1
                counts.rejected_sync += 1
                return dialect.rejected(code)
        elif scenario.rules:
            quiet = scenario.quiet(t, carrier, to, body, name, draws)
            if quiet is not None and quiet.silent:
                fate = Fate.SILENT  # receipted "delivered", never arrives
            elif quiet is not None:
                code, fate = dialect.unreachable_code, Fate.CUT  # a generic "undelivered"
        text = Text(dialect.new_id(), to, request.sender, body, carrier, time.time(), name)
        segments = count_segments(body)
        self._take(dialect, request, text, code, fate, segments, t, draws)
        outcome = dialect.accepted(text, request, segments)
        answer = scenario.answer(t, carrier, to, body, name, draws) if scenario.rules else None
        return outcome if answer is None else self._shape(outcome, answer, counts)

    def _take(
        self,
        dialect: Dialect,
        request: SendRequest,
        text: Text,
        code: str | None,
        fate: Fate,
        segments: int,
        t: float,
        draws: tuple[float, ...],
    ) -> None:
        """The provider has the text: the handset (or its carrier's filter), the log, a receipt."""
        totals = self.counters
        counts = totals.by_provider[dialect.name]
        totals.accepted += 1
        counts.accepted += 1
        if fate == Fate.HANDSET:
            self.inboxes.deliver(text)
        elif fate == Fate.FILTERED:
            totals.filtered += 1
            self.inboxes.filtered(text.carrier, dialect.name)
        elif fate == Fate.SILENT:
            totals.silently_dropped += 1
            counts.silently_dropped += 1
        else:
            totals.undelivered_by_cut += 1
            counts.undelivered_by_cut += 1
        sent = Sent(text, request.account, segments, code, silent=fate == Fate.SILENT)
        self.sent.record(sent)
        url = request.callback or self.callback_urls.get(dialect.name)
        receipt = self._receipt(dialect, request, sent, url, t, draws)
        self.carriers.record(text.carrier, text.at, fate, receipt)
        # Only a text that reached its handset is answered: a filtered, silently dropped
        # or cut one never arrives, so its person never replies.
        if self._replying and fate == Fate.HANDSET:
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

    def _receipt(
        self,
        dialect: Dialect,
        request: SendRequest,
        sent: Sent,
        url: str | None,
        t: float,
        draws: tuple[float, ...],
    ) -> ReceiptFate:
        """Schedule the text's receipts to ``url``, unless a rule suppresses them or there
        is nowhere to post them; which of those (carrier_log.py)."""
        text, scenario = sent.text, self._scenario
        key = (t, text.carrier, text.to, text.body, dialect.name, draws)
        if not scenario.receipts_on(*key):
            self.counters.receipts_suppressed += 1
            self.counters.by_provider[dialect.name].receipts_suppressed += 1
            return ReceiptFate.SUPPRESSED
        if not url:
            return ReceiptFate.NO_URL  # as with a provider given no callback
        delay_s = scenario.receipt_delay_s(*key)
        # The tally of this run: a receipt posted after a reset counts into the old one.
        tally = self.carriers.tally(text.carrier)
        for build in dialect.receipts(text, request, url, sent.code, sent.segments):
            self.receipts.schedule(build, delay_s, tally.observe_receipt)
        sent.final_at = text.at + delay_s
        return ReceiptFate.DUE

    # -- report ------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        c, inboxes, receipts = self.counters, self.inboxes, self.receipts
        return {
            "t": round(self.clock(), 3),
            "started_ms": round(self.started_at * 1000),
            "requests": c.requests,
            "accepted": c.accepted,
            "rejected_sync": c.rejected_sync,
            "rejected_invalid": c.rejected_invalid,
            "throttled_429": c.throttled_429,
            "faulted": c.faulted,
            "filtered": c.filtered,
            "silently_dropped": c.silently_dropped,
            "undelivered_by_cut": c.undelivered_by_cut,
            "receipts_suppressed": c.receipts_suppressed,
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
            "by_carrier": self.carrier_report(),
            "by_provider": {name: self._provider_report(name) for name in PROVIDERS},
        }

    def carrier_report(self) -> dict[str, dict[str, int]]:
        """Per carrier: the log's counts (carrier_log.py), and ``delivered`` (copies
        that reached handsets, as ``reached_handset``) and ``doubled`` from the inboxes."""
        out = self.carriers.carriers()
        for name, n in self.inboxes.by_carrier.items():
            row = out.setdefault(name, CarrierTally().as_json())
            row["delivered"], row["doubled"] = n.delivered, n.doubled
        return out

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
