"""The send path (DESIGN.md, "Flow"): claim, gates, route, outcome.

The pipeline knows no provider by name and no check by name: it claims the
text under a lease, asks each gate in turn (go, hold or end), routes what all
of them let through, and records what came of it. The lease is renewed while
it works; every change it makes out of ``sending`` is fenced by that lease.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import structlog

from worker.holds import breaker_name
from worker.sendpath.claim import Claimer
from worker.sendpath.config import PipelineConfig
from worker.sendpath.gates import Gate, Kind
from worker.sendpath.gates.exposure import ExposureSlots
from worker.sendpath.ledger import Ledger
from worker.sendpath.optout_feed import OptoutFeed
from worker.sendpath.outcome import Outcomes
from worker.sendpath.parts import Parts
from worker.sendpath.route import Routed, Router
from worker.sendpath.settle import Settler
from worker.sendpath.text import Text

BOUND = ("message_id", "campaign", "provider", "carrier")
STALE = "stale"


class Pipeline:
    def __init__(
        self,
        config: PipelineConfig,
        parts: Parts,
        gates: Sequence[Gate],
        rechecks: Sequence[Gate] = (),
    ) -> None:
        self.config = config
        self.parts = parts
        self.gates = list(gates)
        settler = Settler(
            parts.store, config, parts.providers, exposure=parts.exposure, watch=parts.watch
        )
        self.ledger = Ledger(parts.store, config.lease_ms)
        self.claimer = Claimer(parts.store, config, settler)
        self.router = Router(config, parts, self.ledger, rechecks)
        self.outcomes = Outcomes(config, parts, settler)
        self.optout_feed = OptoutFeed(parts.optouts, config.org)
        self.slots = ExposureSlots(parts.exposure)

    async def deliver(self, msg_id: str) -> str:
        """Take one text as far as it can go now; returns what happened, for tests and logs."""
        structlog.contextvars.bind_contextvars(message_id=msg_id)
        try:
            text = await self.claimer.claim(msg_id)
            if text is None:
                return "skipped"
            structlog.contextvars.bind_contextvars(campaign=text.record.get("campaign"))
            async with self.ledger.kept(text):
                return await self._send(text)
        finally:
            structlog.contextvars.unbind_contextvars(*BOUND)

    async def _send(self, text: Text) -> str:
        for gate in self.gates:
            verdict = await gate.check(text)
            if verdict.kind is not Kind.GO:
                await self.slots.stopped(text, verdict)
                return await self.outcomes.verdict(text, verdict)
        text.gated_at_s = time.monotonic()
        routed = await self.router.route(text)
        if routed.verdict is not None:
            # Asked again before an attempt (after a wait), a gate said no.
            await self.slots.stopped(text, routed.verdict)
            return await self.outcomes.verdict(text, routed.verdict)
        await self.slots.routed(text, routed)
        if routed.stale:
            return STALE
        if routed.defer is not None:
            return await self.outcomes.defer(text, routed)
        await self._feed(text, routed)
        return await self.outcomes.record(text, routed)

    async def _feed(self, text: Text, routed: Routed) -> None:
        """What the answer says of the carrier (its name, whether it is filtering)
        and of the person (whether they opted out)."""
        result = routed.result
        if result is None:
            return
        sent_ms = int(text.record.get(f"a{text.attempt}:at_ms") or 0)
        if result.ok and sent_ms:
            await self.parts.watch.sent_once(
                text.id, text.attempt, text.carrier, text.campaign, sent_ms=sent_ms
            )
        await self.optout_feed.heard(
            text.record,
            result.category,
            provider=routed.provider or "",
            code=result.error_code,
            receipt=False,
        )
        await self.parts.feed.learn_carrier(text.to, result.carrier)
        name = breaker_name(text.carrier, text.campaign)
        await self.parts.feed.answer(name, result.category, result.error_code)
