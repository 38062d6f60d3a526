"""The simulated provider and carriers, without HTTP: what happens to each send.

``Simulator.send`` takes a send request's form and returns an ``Outcome``
(HTTP status, JSON body, headers). The web layer only parses and answers, so
this is where throttling, scenario rules, inboxes and receipts meet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from worker.phone import count_segments
from worker.simulator import twilio_api
from worker.simulator.carriers import carrier_of
from worker.simulator.config import SimulatorConfig
from worker.simulator.inbox import Inboxes, Text
from worker.simulator.receipts import ReceiptPoster, status_params
from worker.simulator.scenario import Rule, Scenario

MAX_BODY_CHARS = 1600  # Twilio's limit on a concatenated body (21617)
RETRY_AFTER = {"Retry-After": "1"}  # windows are one second long


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None
    # > 0: a fault that hangs; the web layer sleeps this long before answering.
    hang_s: float = 0.0


class Throttle:
    """Fixed one-second windows per account and per From number."""

    def __init__(self) -> None:
        self._second = -1
        self._counts: dict[str, int] = {}

    def admit(
        self, account: str, sender: str, account_mps: int | None, number_mps: int | None
    ) -> bool:
        second = int(time.monotonic())
        if second != self._second:
            self._second, self._counts = second, {}
        counts = self._counts
        # Separate key spaces: account SIDs start with letters, numbers with "+".
        used_account = counts.get(account, 0)
        used_number = counts.get(sender, 0)
        if account_mps is not None and used_account >= account_mps:
            return False
        if number_mps is not None and used_number >= number_mps:
            return False
        counts[account] = used_account + 1
        counts[sender] = used_number + 1
        return True

    def reset(self) -> None:
        self._second, self._counts = -1, {}


@dataclass(slots=True)
class Counters:
    requests: int = 0
    accepted: int = 0
    rejected_sync: int = 0
    rejected_invalid: int = 0
    throttled_429: int = 0
    faulted: int = 0
    filtered: int = 0


@dataclass(slots=True)
class Simulator:
    config: SimulatorConfig
    receipts: ReceiptPoster
    scenario: Scenario = field(init=False)
    inboxes: Inboxes = field(default_factory=Inboxes)
    counters: Counters = field(default_factory=Counters)
    throttle: Throttle = field(default_factory=Throttle)
    epoch: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.scenario = self.config.scenario

    def clock(self) -> float:
        """Seconds on the scenario clock: since start or the last reset."""
        return time.monotonic() - self.epoch

    def reset(self) -> None:
        self.epoch = time.monotonic()
        self.inboxes.clear()
        self.counters = Counters()
        self.throttle.reset()
        self.receipts.reset()

    def send(self, account_sid: str, form: dict[str, str]) -> Outcome:
        self.counters.requests += 1
        scenario = self.scenario
        sender = form.get("From", "")
        if not self.throttle.admit(account_sid, sender, scenario.account_mps, scenario.number_mps):
            self.counters.throttled_429 += 1
            return Outcome(429, twilio_api.error(20429, 429), RETRY_AFTER)
        invalid = _invalid(form)
        if invalid is not None:
            self.counters.rejected_invalid += 1
            return invalid
        parsed = _parse_to(form["To"])
        if parsed is None:
            self.counters.rejected_invalid += 1
            message = f"The 'To' number {form['To']} is not a valid phone number."
            return Outcome(400, twilio_api.error(21211, 400, message))
        to, region = parsed
        return self._route(account_sid, to, carrier_of(to, region), sender, form)

    def _route(
        self, account_sid: str, to: str, carrier: str, sender: str, form: dict[str, str]
    ) -> Outcome:
        body = form["Body"]
        t = self.clock()
        rule = self.scenario.fate(t, carrier, to, body)
        if rule is not None and rule.is_fault:
            self.counters.faulted += 1
            return _fault(rule)
        if rule is not None and rule.mode == "sync":
            self.counters.rejected_sync += 1
            return Outcome(400, twilio_api.error(int(rule.error_code or 30008), 400))
        text = Text(twilio_api.new_sid(), to, sender, body, carrier, time.time())
        self.counters.accepted += 1
        error_code = rule.error_code if rule is not None else None
        if error_code:
            self.counters.filtered += 1
            self.inboxes.filtered(carrier)
        else:
            self.inboxes.deliver(text)
        callback = form.get("StatusCallback")
        if callback and self.scenario.receipts:
            self._schedule_receipt(account_sid, text, callback, error_code, t)
        resource = twilio_api.message(
            sid=text.sid,
            account_sid=account_sid,
            to=to,
            sender=sender,
            body=body,
            segments=count_segments(body),
        )
        return Outcome(201, resource)

    def _schedule_receipt(
        self, account_sid: str, text: Text, callback: str, error_code: str | None, t: float
    ) -> None:
        params = status_params(
            sid=text.sid,
            account_sid=account_sid,
            sender=text.sender,
            to=text.to,
            status="undelivered" if error_code else "delivered",
            error_code=error_code,
        )
        delay = self.scenario.receipt_delay_s(t, text.carrier, text.to, text.body)
        self.receipts.schedule(callback, params, delay)

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
            "delivered_to_handsets": inboxes.delivered,
            "unique_texts": inboxes.unique,
            "doubled": inboxes.doubled,
            "receipts_sent": receipts.sent,
            "receipts_failed": receipts.failed,
            "receipts_pending": receipts.pending,
            "by_carrier": {
                name: {"delivered": n.delivered, "filtered": n.filtered, "doubled": n.doubled}
                for name, n in inboxes.by_carrier.items()
            },
        }


def _invalid(form: dict[str, str]) -> Outcome | None:
    """Twilio's answer to a send missing a field, or None when all are present."""
    for name, code in (("To", 21604), ("From", 21603), ("Body", 21602)):
        if not form.get(name):
            return Outcome(400, twilio_api.error(code, 400))
    if len(form["Body"]) > MAX_BODY_CHARS:
        return Outcome(400, twilio_api.error(21617, 400))
    callback = form.get("StatusCallback")
    if callback and not callback.startswith(("http://", "https://")):
        return Outcome(400, twilio_api.error(21609, 400))
    return None


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


def _fault(rule: Rule) -> Outcome:
    status = rule.http_status or 503
    code = int(rule.error_code) if rule.error_code else 20000 + status
    headers = RETRY_AFTER if status == 429 else None
    return Outcome(status, twilio_api.error(code, status), headers, rule.hang_s if rule.hang else 0)
