"""Hearing recipients: what an inbound text, or a provider's "opted out", does.

An inbound text is recorded first (``inbound_log``: who wrote, to which of our
numbers, through which provider, linked to the last text we sent them from
that number and so to its campaign and carrier), then read (``keywords``) and
acted on:

    STOP       the person goes on the opt-out list of each organisation concerned;
               a confirmation reply is sent once, where the organisation has one
    possible   ("please stop texting me", "wrong number"): [optouts] possible
               decides, "suppress" (taken as a STOP, without the confirmation) or
               "flag" (listed in `sendq optouts review` for an operator)
    START      the person comes off the list (only their own text does this)
    HELP       the organisation's help reply, once
    anything   recorded; it is a reply (the deliverability watch counts them)

Which organisations: every one that sends from the number it came to, and the
linked text's campaign's. A person cannot tell which organisation is behind a
shared number, and the link names only the last text sent from it, so a STOP
to a number is honoured by everyone who texts from it. A number sendq does not
know (one dropped from the configuration since) reaches every organisation.

A provider's answer or receipt that says "opted out" is the send path's
(``worker.sendpath.optout_feed``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from worker.inbound_log import AsyncInboundLog, InboundRecord
from worker.keywords import Kind, Match, compact, explain
from worker.models import HELP_REPLY, STOP_REPLY
from worker.optouts import AsyncOptoutList, Source, inbound_cause
from worker.providers.base import InboundText
from worker.watch.counters import WatchCounters

log = structlog.get_logger("sendq.inbound")


@dataclass(frozen=True, slots=True)
class ReplyOrder:
    """A reply to send: to the person, from the number and provider they wrote to."""

    inbound_id: str
    kind: str  # models.STOP_REPLY or models.HELP_REPLY
    org: str
    campaign: str
    to: str
    sender: str
    provider: str
    body: str


# Queues a reply (the producer, in a thread); returns its message id.
SendReply = Callable[[ReplyOrder], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Orgs:
    """Which organisations an inbound text concerns, from the configuration."""

    default_org: str
    # Each configured campaign's organisation.
    by_campaign: Mapping[str, str] = field(default_factory=dict)
    # Each of our sending numbers: the organisations whose campaigns send from it.
    by_number: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # Organisations named only by an [orgs.NAME] section.
    named: Sequence[str] = ()

    def of(self, record: InboundRecord) -> list[str]:
        linked = (
            [self.by_campaign.get(record.campaign, self.default_org)] if record.campaign else []
        )
        senders = self.by_number.get(record.to) or ([] if linked else self.all())
        return list(dict.fromkeys([*linked, *senders]))

    def all(self) -> list[str]:
        """Every organisation the configuration knows."""
        known = [self.default_org, *self.by_campaign.values()]
        known += [org for orgs in self.by_number.values() for org in orgs]
        known += self.named
        return list(dict.fromkeys(known))


@dataclass(frozen=True, slots=True)
class Replies:
    """Each organisation's reply texts; "" sends none."""

    stop: Mapping[str, str] = field(default_factory=dict)
    help: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reading:
    """How inbound texts are read: the extra keywords and the possible-opt-out policy."""

    extra_stop: tuple[str, ...] = ()
    extra_optin: tuple[str, ...] = ()
    possible: str = "suppress"  # or "flag"

    def read(self, body: str) -> Match:
        return explain(body, extra_stop=self.extra_stop, extra_optin=self.extra_optin)


class Hearing:
    def __init__(
        self,
        inbound: AsyncInboundLog,
        optouts: AsyncOptoutList,
        *,
        orgs: Orgs,
        reading: Reading,
        replies: Replies,
        send_reply: SendReply | None,
        watch: WatchCounters | None = None,
    ) -> None:
        self.watch = watch
        self.inbound = inbound
        self.optouts = optouts
        self.orgs = orgs
        self.reading = reading
        self.replies = replies
        self.send_reply = send_reply

    async def take(self, provider: str, text: InboundText) -> dict[str, Any]:
        """Record one inbound text and act on it; the answer's entry for it."""
        record = await self.inbound.record(provider, text)
        if record.duplicate and record.kind:
            # The provider posted it again: it was acted on the first time. One
            # recorded but never marked (the first post failed midway) is acted
            # on now; adding to a list and flagging are idempotent.
            return {"applied": False, "reason": "already recorded", "id": record.id}
        match = self.reading.read(text.body)
        orgs = self.orgs.of(record)
        action = await self._act(match, orgs, record)
        if not record.duplicate:
            await self._watch(record, match.kind)
        await self.inbound.mark(
            record.id, kind=match.kind.value, rule=match.rule, action=action, orgs=",".join(orgs)
        )
        log.info(
            "inbound text",
            provider=provider,
            inbound_id=record.id,
            campaign=record.campaign,
            carrier=record.carrier,
            kind=match.kind.value,
            action=action,
        )
        return {"applied": True, "id": record.id, "kind": match.kind.value, "action": action}

    async def _watch(self, record: InboundRecord, kind: Kind) -> None:
        """A reply (a STOP too: it proves the text arrived) to a linked text, counted
        for its carrier x campaign with the texts sent when it was."""
        if self.watch is None or not (record.campaign and record.message_sent_ms):
            return
        carrier = record.message_carrier or record.carrier or "unknown"
        sent_ms = record.message_sent_ms
        await self.watch.reply(carrier, record.campaign, sent_ms=sent_ms)
        if kind in (Kind.STOP, Kind.POSSIBLE):
            await self.watch.optout(carrier, record.campaign, sent_ms=sent_ms)

    async def _act(self, match: Match, orgs: list[str], record: InboundRecord) -> str:
        if match.kind is Kind.STOP:
            return await self._opt_out(orgs, record, confirm=True)
        if match.kind is Kind.POSSIBLE:
            return await self._possible(match, orgs, record)
        if match.kind is Kind.START:
            return await self._opt_in(orgs, record)
        if match.kind is Kind.HELP:
            return await self._reply(HELP_REPLY, orgs, record) or "no help reply configured"
        return "recorded"

    async def _opt_out(self, orgs: list[str], record: InboundRecord, *, confirm: bool) -> str:
        cause = inbound_cause(record.id, record.provider)
        added = [
            org
            for org in orgs
            if await self.optouts.add(
                org, record.sender, source=Source.INBOUND, by="inbound", cause=cause
            )
        ]
        if not added:
            return "already opted out"
        log.warning("opted out", provider=record.provider, orgs=",".join(added))
        # Confirmed once: a second STOP (already on the list) gets no second reply.
        replied = await self._reply(STOP_REPLY, added, record) if confirm else ""
        return "opted out" + (f"; {replied}" if replied else "")

    async def _possible(self, match: Match, orgs: list[str], record: InboundRecord) -> str:
        if self.reading.possible == "suppress":
            # Taken as a STOP (unconfirmed: it may not have been one); the inbound
            # log keeps its kind and rule, and the audit entry names the text.
            done = await self._opt_out(orgs, record, confirm=False)
            return f"possible opt-out ({match.rule}), taken as one: {done}"
        for org in orgs:
            await self.optouts.flag(
                org,
                record.sender,
                inbound_id=record.id,
                body=record.body,
                provider=record.provider,
                rule=match.rule,
            )
        return f"possible opt-out ({match.rule}), flagged for review"

    async def _opt_in(self, orgs: list[str], record: InboundRecord) -> str:
        cause = inbound_cause(record.id, record.provider)
        # A bare YES also answers questions: it lifts only an opt-out the person's own
        # text made, never an operator's or an imported one (START and UNSTOP do).
        only_own = compact(record.body) == "yes"
        removed, kept = [], []
        for org in orgs:
            entry = await self.optouts.entry(org, record.sender)
            if entry is not None and only_own and entry.get("source") != Source.INBOUND:
                kept.append(org)
                continue
            if await self.optouts.remove(
                org, record.sender, source=Source.INBOUND, by="inbound", cause=cause
            ):
                removed.append(org)
        if kept:
            return "YES does not lift an opt-out the person did not text; START does"
        return "opted back in" if removed else "was not opted out"

    async def _reply(self, kind: str, orgs: list[str], record: InboundRecord) -> str:
        """Queue the first configured reply of ``kind`` among ``orgs``; what was done."""
        texts = self.replies.stop if kind == STOP_REPLY else self.replies.help
        org = next((o for o in orgs if texts.get(o)), None)
        if org is None or self.send_reply is None:
            return ""
        order = ReplyOrder(
            inbound_id=record.id,
            kind=kind,
            org=org,
            campaign=record.campaign or "",
            to=record.sender,
            sender=record.to,
            provider=record.provider,
            body=texts[org],
        )
        try:
            message_id = await self.send_reply(order)
        except Exception as exc:  # the opt-out stands; a lost reply is only logged
            log.error("could not queue the reply", kind=kind, error=str(exc)[:200])
            return f"{kind} reply not queued: {str(exc)[:100]}"
        return f"{kind} reply queued ({message_id})"
