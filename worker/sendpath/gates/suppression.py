"""Suppression: a person on the organisation's opt-out list is never texted.

Checked at send time as well as at enqueue, because a person may opt out
while the text waits (queued, held, deferred or retried): every text passes
this gate again each time it comes back, a released hold included. The check
is one Redis command (HEXISTS) per text.

Replies pass: a STOP's own confirmation (the STOP that closed the gate is
what it answers) and a HELP answer (CTIA: HELP is answered even after STOP).
"""

from __future__ import annotations

from worker.models import HELP_REPLY, REPLY_KIND_FIELD, STOP_REPLY, Status
from worker.optouts import AsyncOptoutList
from worker.sendpath.config import PipelineConfig
from worker.sendpath.gates.base import GO, Verdict, end
from worker.sendpath.text import Text

REPLY_KINDS = (STOP_REPLY, HELP_REPLY)
READS = ("optouts",)  # keys.optouts(org): one HEXISTS
WRITES: tuple[str, ...] = ()


class SuppressionGate:
    name = "suppression"

    def __init__(self, optouts: AsyncOptoutList, config: PipelineConfig) -> None:
        self.optouts = optouts
        self.config = config

    async def check(self, text: Text) -> Verdict:
        if text.record.get(REPLY_KIND_FIELD) in REPLY_KINDS:
            return GO
        # The campaign's organisation as configured now; the one it had at enqueue
        # too, should the configuration have moved it since.
        org = self.config.org(text.campaign)
        if await self.optouts.is_opted_out(org, text.to):
            return end(Status.SUPPRESSED, f"opted out of organisation {org}")
        was = text.record.get("org")
        if was and was != org and await self.optouts.is_opted_out(was, text.to):
            return end(Status.SUPPRESSED, f"opted out of organisation {was}")
        return GO
