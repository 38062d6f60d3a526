"""A throwaway sixth provider, "acme": everything sendq needs of a provider, in one module.

Its settings model, its secret, its error codes and its adapter, as a provider
module in worker/providers/ has them. tests/test_registry.py registers its SPEC
(the one line a real provider adds to registry.py) and shows that settings,
the registry and the test stacks take it with no other file changed. It sends
nothing: what is under test is the wiring, not an HTTP API.
"""

from __future__ import annotations

from pydantic import Field

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
    classify_by_table,
)

NAME = "acme"
API_KEY = "acme_api_key"  # SENDQ_ACME_API_KEY
ERROR_CATEGORIES: dict[str, Category] = {"blocked": Category.CARRIER_BLOCK}


class AcmeSettings(ProviderSettings):
    """``[providers.acme]``."""

    base_url: str = "https://api.acme.invalid"
    account: str = Field("acct-0", min_length=1)


class AcmeProvider(Provider):
    name = NAME

    def __init__(self, *, config: AcmeSettings, api_key: str) -> None:
        self.config = config
        self.api_key = api_key

    async def send(self, text: OutboundText) -> SendResult:
        category = classify_by_table(ERROR_CATEGORIES, None, 200)
        return SendResult(category, provider_message_id=f"acme-{text.message_id}")

    def verify_signature(self, request: WebhookRequest) -> bool:
        return False

    def parse_receipt(self, request: WebhookRequest) -> Receipt:
        raise InvalidWebhook("acme sends no receipts")


def build(config: AcmeSettings, secrets: Secrets) -> AcmeProvider:
    return AcmeProvider(config=config, api_key=secrets.require(API_KEY))


SPEC = ProviderSpec(NAME, AcmeSettings, build, secrets=(API_KEY,))
