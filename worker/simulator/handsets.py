"""Handsets that reply, and what their replies say about sendq: opt-out violations.

For every text that reached a handset (engine.py calls ``received``), the
scenario's ``[replies]`` (replies.py) decide whether the person answers, what
and when; the answer is posted to sendq's inbound route in the provider's shape
(inbound.py) by a poster of its own, which tells each ``Reply`` how every
attempt went. All times are Unix time on the simulator's one event loop, so
"before" and "after" mean the order in which the simulator saw things.

An **opt-out violation** is a text whose send request reached a provider (it
was accepted, delivered or filtered) after sendq's webhook answered 2xx to that
handset's ``stop`` or ``possible`` reply. Texts already in a provider's hands
at that moment are allowed, and so is one text whose body contains one of the
scenario's ``stop_confirmations`` (sendq's single confirmation reply); a second
one is a violation too. A reply sendq never answered 2xx opts nobody out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.simulator.carriers import carrier_of
from worker.simulator.dialect import Dialect, SendRequest
from worker.simulator.inbound import Inbound, InboundShapes
from worker.simulator.inbox import Inboxes, Text
from worker.simulator.receipts import Attempt, ReceiptPoster
from worker.simulator.replies import OPT_OUT_KINDS, REPLY_KINDS, ReplySettings, inbound_url
from worker.simulator.scenario import PROVIDERS, Scenario
from worker.simulator.sent import Sent, SentLog
from worker.simulator.signing_settings import SigningSettings

STATES = ("pending", "answered", "refused", "failed")


def _ms(at: float | None) -> int | None:
    return None if at is None else round(at * 1000)


@dataclass(slots=True)
class Reply:
    """One reply and how sendq's webhook took it."""

    text: Inbound
    kind: str
    in_reply_to: str  # the sid of the text it answers
    url: str
    due_at: float  # Unix s: when the person sends it
    posted_at: float | None = None  # the first attempt
    answered_at: float | None = None  # sendq's 2xx
    status: int | None = None  # the last attempt's HTTP status
    tries: int = 0
    # pending, answered (2xx), refused (4xx), failed (anything else, out of tries).
    state: str = "pending"

    def observe(self, attempt: Attempt) -> None:
        self.tries = attempt.tries
        self.status = attempt.status
        if self.posted_at is None:
            self.posted_at = attempt.started_at
        if attempt.status is not None and 200 <= attempt.status < 300:
            self.answered_at, self.state = attempt.ended_at, "answered"
        elif attempt.final:
            refused = attempt.status is not None and 400 <= attempt.status < 500
            self.state = "refused" if refused else "failed"

    def as_json(self) -> dict[str, Any]:
        t = self.text
        return {
            "id": t.sid,
            "provider": t.provider,
            "from": t.sender,
            "to": t.to,
            "carrier": t.carrier,
            "kind": self.kind,
            "body": t.body,
            "in_reply_to": self.in_reply_to,
            "url": self.url,
            "due_ms": _ms(self.due_at),
            "posted_ms": _ms(self.posted_at),
            "answered_ms": _ms(self.answered_at),
            "status": self.status,
            "tries": self.tries,
            "state": self.state,
        }


@dataclass(frozen=True, slots=True)
class Violation:
    """A text that reached a provider after its recipient's opt-out was taken."""

    sent: Sent
    opt_out: Reply

    def as_json(self) -> dict[str, Any]:
        text, answered = self.sent.text, self.opt_out.answered_at or 0.0
        return {
            "handset": text.to,
            "sid": text.sid,
            "from": text.sender,
            "body": text.body,
            "provider": text.provider,
            "filtered": self.sent.code is not None,
            "silent": self.sent.silent,
            "accepted_ms": _ms(text.at),
            "opt_out_kind": self.opt_out.kind,
            "opt_out_body": self.opt_out.text.body,
            "opted_out_ms": _ms(answered),
            "after_ms": round((text.at - answered) * 1000, 3),
        }


def text_json(sent: Sent | Text) -> dict[str, Any]:
    """A text as a handset's view shows it; the simulator's handset gets a text the
    moment the provider accepts it, so ``received_ms`` is ``accepted_ms``."""
    text = sent.text if isinstance(sent, Sent) else sent
    at = _ms(text.at)
    return {
        "sid": text.sid,
        "from": text.sender,
        "body": text.body,
        "provider": text.provider,
        "carrier": text.carrier,
        "accepted_ms": at,
        "received_ms": at,
    }


class Handsets:
    """Every handset's replies: decided, posted, answered; and the violations they show."""

    def __init__(
        self,
        shapes: InboundShapes,
        poster: ReceiptPoster,
        inboxes: Inboxes,
        sent: SentLog,
        *,
        inbound_url: str | None,
        fallback_url: str,
    ) -> None:
        self._shapes = shapes
        self._poster = poster
        self._inboxes = inboxes
        self._sent = sent
        self._configured_url = inbound_url
        self._fallback_url = fallback_url
        self.settings = ReplySettings()
        self.signing = SigningSettings()
        self._replies: dict[str, list[Reply]] = {}
        # Texts (or handsets, per = "handset") already decided: a double is answered once.
        self._decided: set[str] = set()
        # Handsets that said stop (or might have): they say nothing more.
        self._silenced: set[str] = set()
        self.considered = 0

    def use(self, scenario: Scenario) -> None:
        self.settings, self.signing = scenario.replies, scenario.signing

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def reset(self) -> None:
        """A new run: no replies, and none still due from the last one (post_stale=False)."""
        self._replies.clear()
        self._decided.clear()
        self._silenced.clear()
        self.considered = 0
        self._poster.reset()

    # -- replying ----------------------------------------------------------------------

    def received(
        self,
        dialect: Dialect,
        request: SendRequest,
        text: Text,
        receipt_url: str | None,
        t: float,
    ) -> Reply | None:
        """A text reached its handset at ``t`` (scenario clock): schedule its reply, if any."""
        settings = self.settings
        if text.to in self._silenced or not settings.eligible(text.body, t):
            return None
        key = text.to if settings.per == "handset" else f"{text.to}\x00{text.body}"
        if key in self._decided:
            return None
        self._decided.add(key)
        self.considered += 1
        decision = settings.decide(text.to, text.body, text.carrier)
        if decision is None:
            return None
        inbound = Inbound(
            sid=dialect.new_id(),
            provider=dialect.name,
            sender=text.to,
            to=text.sender,
            body=decision.body,
            carrier=text.carrier,
            account=request.account,
            application_id=request.extra.get("applicationId", ""),
            sent_at=text.at + decision.delay_s,
        )
        url = inbound_url(
            settings.inbound_url or self._configured_url,
            receipt_url,
            self._fallback_url,
            dialect.name,
        )
        reply = Reply(inbound, decision.kind, text.sid, url, inbound.sent_at)
        self._replies.setdefault(text.to, []).append(reply)
        if decision.kind in OPT_OUT_KINDS:
            self._silenced.add(text.to)
        build = self._shapes.builder(
            inbound, url, vonage_method=settings.vonage_method, twilio_key=self.signing.twilio
        )
        self._poster.schedule(build, decision.delay_s, reply.observe)
        return reply

    # -- counting ----------------------------------------------------------------------

    def replies(self, number: str | None = None) -> list[Reply]:
        if number is not None:
            return list(self._replies.get(number, ()))
        return [reply for replies in self._replies.values() for reply in replies]

    def opt_out(self, number: str) -> Reply | None:
        """The handset's opt-out reply that sendq answered 2xx (the first), if any."""
        taken = [
            r
            for r in self._replies.get(number, ())
            if r.kind in OPT_OUT_KINDS and r.answered_at is not None
        ]
        return min(taken, key=lambda r: r.answered_at or 0.0) if taken else None

    def check(self, number: str) -> tuple[list[Violation], int]:
        """The handset's violations, and how many exempt confirmations it got."""
        opt_out = self.opt_out(number)
        if opt_out is None or opt_out.answered_at is None:
            return [], 0
        violations, confirmed = [], 0
        for sent in self._sent.to(number):
            if sent.text.at <= opt_out.answered_at:
                continue
            if not confirmed and self.settings.is_confirmation(sent.text.body):
                confirmed = 1
                continue
            violations.append(Violation(sent, opt_out))
        return violations, confirmed

    def violations(self) -> list[Violation]:
        return [v for number in self._replies for v in self.check(number)[0]]

    def summary(self) -> dict[str, Any]:
        """Counts of replies by kind, state, provider and carrier, opt-outs and violations."""
        by: dict[str, dict[str, dict[str, int]]] = {
            "by_kind": {kind: _states() for kind in REPLY_KINDS},
            "by_provider": {name: _states() for name in PROVIDERS},
            "by_carrier": {},
        }
        totals = _states()
        for reply in self.replies():
            for counts in (
                totals,
                by["by_kind"][reply.kind],
                by["by_provider"][reply.text.provider],
                by["by_carrier"].setdefault(reply.text.carrier, _states()),
            ):
                counts["replies"] += 1
                counts[reply.state] += 1
        violations: dict[str, int] = dict.fromkeys(sorted(OPT_OUT_KINDS), 0)
        confirmations = opted_out = unanswered = 0
        for number, replies in self._replies.items():
            found, confirmed = self.check(number)
            confirmations += confirmed
            for v in found:
                violations[v.opt_out.kind] += 1
            if self.opt_out(number) is not None:
                opted_out += 1
            elif any(r.kind in OPT_OUT_KINDS for r in replies):
                unanswered += 1
        return {
            "enabled": self.enabled,
            "texts_considered": self.considered,
            **totals,
            **by,
            "opted_out": opted_out,
            "opt_outs_unanswered": unanswered,
            "violations": sum(violations.values()),
            "violations_by_kind": violations,
            "confirmations": confirmations,
        }

    def handset(self, number: str) -> dict[str, Any]:
        """One handset: texts received (filtered or cut, and silently dropped), replies,
        opt-out, violations."""
        opt_out = self.opt_out(number)
        violations, confirmed = self.check(number)
        return {
            "number": number,
            "carrier": carrier_of(number),
            "texts": [text_json(t) for t in self._inboxes.texts(number)],
            "filtered": [text_json(s) for s in self._sent.to(number) if s.code is not None],
            "silently_dropped": [text_json(s) for s in self._sent.to(number) if s.silent],
            "replies": [r.as_json() for r in self._replies.get(number, ())],
            "opted_out_ms": _ms(opt_out.answered_at) if opt_out is not None else None,
            "confirmations": confirmed,
            "violations": [v.as_json() for v in violations],
        }

    def numbers(self) -> list[str]:
        """Every handset that received a text or replied."""
        return list(dict.fromkeys([*self._inboxes.numbers(), *self._replies]))


def _states() -> dict[str, int]:
    return {"replies": 0, **dict.fromkeys(STATES, 0)}
