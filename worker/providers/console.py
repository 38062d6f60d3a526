"""A provider that logs texts instead of sending them: for trying sendq out.

It accepts every text, so it has no receipts, no signatures and no errors.
"""

from __future__ import annotations

import secrets

import structlog

from worker.errors import InvalidWebhook
from worker.models import Category
from worker.providers.base import (
    OutboundText,
    Provider,
    ProviderSettings,
    ProviderSpec,
    Receipt,
    Secrets,
    SendResult,
    WebhookRequest,
)

NAME = "console"
log = structlog.get_logger("sendq.console")


class ConsoleProvider(Provider):
    name = NAME

    async def send(self, text: OutboundText) -> SendResult:
        # The log processor masks both numbers.
        log.info(
            "text (console provider, not sent)",
            to=text.to,
            sender=text.sender,
            chars=len(text.body),
        )
        return SendResult(Category.OK, provider_message_id=f"console-{secrets.token_hex(8)}")

    def verify_signature(self, request: WebhookRequest) -> bool:
        # Nothing calls back for the console provider, so nothing is ever genuine.
        return False

    def parse_receipt(self, request: WebhookRequest) -> Receipt:
        raise InvalidWebhook("the console provider sends no receipts")


class ConsoleSettings(ProviderSettings):
    """``[providers.console]``: only its numbers matter; nothing is sent anywhere."""

    base_url: str = "http://console.invalid"


def build(config: ConsoleSettings, secrets: Secrets) -> ConsoleProvider:
    return ConsoleProvider()


SPEC = ProviderSpec(NAME, ConsoleSettings, build)
