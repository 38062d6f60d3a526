"""A provider's "opted out" puts the person on the organisation's opt-out list.

Twilio 21610, Telnyx 40300, Bandwidth 4775 and the like, in a send answer or
in a receipt: that provider heard a STOP that sendq never saw (or saw through
another provider). Recorded, the next campaign and every other provider honour
it too; unrecorded, a failover would text the person through a provider that
never saw the STOP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from worker.models import Category
from worker.optouts import AsyncOptoutList, Source, provider_cause

log = structlog.get_logger("sendq.optouts")


class OptoutFeed:
    def __init__(self, optouts: AsyncOptoutList, org_of: Callable[[str], str]) -> None:
        self.optouts = optouts
        self.org_of = org_of

    async def heard(
        self,
        record: Mapping[str, str],
        category: Category,
        *,
        provider: str,
        code: str | None,
        receipt: bool,
    ) -> bool:
        """List the text's recipient if the answer says they opted out; True if added."""
        if category is not Category.OPTED_OUT or not record.get("to"):
            return False
        # The organisation the text was enqueued under: the list it should be on.
        org = record.get("org") or self.org_of(record.get("campaign", ""))
        added = await self.optouts.add(
            org,
            record["to"],
            source=Source.RECEIPT if receipt else Source.PROVIDER_ANSWER,
            by=provider,
            cause=provider_cause(record.get("id", ""), provider, code or ""),
        )
        if added:
            log.warning("opted out, says the provider", provider=provider, error_code=code)
        return added
