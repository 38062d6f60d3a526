"""The provider interface.

A provider turns an OutboundText into an HTTP request, a response into a
SendResult, and a webhook into a Receipt; given a request it says whether the
signature is valid. It knows nothing of queues, breakers or Redis.

Each provider module also declares what it needs to be built (a
``ProviderSpec``): its ``[providers.NAME]`` settings model, the secrets it
reads from the environment, and a build function. worker/providers/registry.py
lists the specs; settings and the composition root read everything from there.
"""

from __future__ import annotations

import abc
import email.utils
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Generic, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from worker.errors import ConfigError, InvalidNumber, InvalidWebhook
from worker.models import Category
from worker.phone import to_e164

# Every setting's environment variable starts with this; a secret named
# ``twilio_auth_token`` is read from SENDQ_TWILIO_AUTH_TOKEN.
ENV_PREFIX = "SENDQ_"


@dataclass(frozen=True, slots=True)
class OutboundText:
    message_id: str
    to: str
    sender: str
    body: str
    status_callback_url: str
    # Seconds the provider may keep trying; None lets it use its default.
    validity_s: int | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    category: Category
    provider_message_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    retry_after_s: float | None = None
    carrier: str | None = None

    @property
    def ok(self) -> bool:
        return self.category is Category.OK


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What a receiver hands a provider: the URL the provider called, and the raw request."""

    url: str
    headers: Mapping[str, str]
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt, parsed. ``status`` is a sendq status name."""

    provider_message_id: str
    status: str
    message_id: str | None = None
    error_code: str | None = None
    category: Category = Category.OK
    carrier: str | None = None
    # The attempt the receipt names, when the adapter reads it from signed content;
    # None leaves it to the callback URL's ``att`` (signed for Twilio, Plivo, Vonage).
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class InboundText:
    """A text a person sent to one of our numbers, parsed from the provider's webhook.

    ``sender`` is the person (E.164), ``to`` our sending number it answers (E.164).
    """

    provider_message_id: str
    sender: str
    to: str
    body: str
    # The provider's own time for it, epoch ms, when the webhook carries one.
    received_ms: int | None = None
    carrier: str | None = None


# One event of a callback, read or refused on its own; the index is its place in the batch.
InboundEvent = tuple[int, InboundText | InvalidWebhook]


@dataclass(frozen=True, slots=True)
class SentQuery:
    """What an unconfirmed attempt was: to whom, from which number, when (epoch ms)."""

    message_id: str
    to: str
    sender: str
    body: str
    after_ms: int


# What a provider's look-up can say of an unconfirmed attempt, besides its message id.
NOT_FOUND = object()  # the provider has no such text: nothing was sent
CANNOT_TELL = object()  # no look-up, or no answer that could ever settle it
ASK_AGAIN = object()  # the look-up is busy or failed (429, 5xx, a lost connection): later


class Provider(abc.ABC):
    name: str
    # One callback may hold many events, inbound texts and receipts mixed
    # (Bandwidth's arrays): a receiver that took its inbound texts must still ask
    # parse_events for its receipts, and the other way round.
    batches_events: bool = False

    @abc.abstractmethod
    async def send(self, text: OutboundText) -> SendResult:
        """Send one text. Network failures raise ProviderError; answers become SendResults."""

    @abc.abstractmethod
    def verify_signature(self, request: WebhookRequest) -> bool:
        """True only when the request carries this provider's valid signature.

        Raises UnknownSigningKey when the request names a signing key sendq has no
        secret for (the receiver answers 403 and logs the key id).
        """

    @abc.abstractmethod
    def parse_receipt(self, request: WebhookRequest) -> Receipt:
        """Parse a delivery receipt, or raise InvalidWebhook."""

    def parse_receipts(self, request: WebhookRequest) -> list[Receipt]:
        """Every receipt in one callback; providers that batch events override this."""
        return [self.parse_receipt(request)]

    def parse_events(self, request: WebhookRequest) -> list[tuple[int, Receipt | InvalidWebhook]]:
        """Each event of the callback with its index, read or refused on its own.

        A provider that batches events (Bandwidth) overrides this so that one
        unreadable event is refused alone; for the others one callback is one event.
        """
        return list(enumerate(self.parse_receipts(request)))

    def is_inbound(self, request: WebhookRequest) -> bool:
        """Does this (signed) callback carry inbound texts rather than receipts?

        Some providers post both to one URL (Bandwidth's application callback,
        Telnyx's messaging profile), so both webhook routes ask.
        """
        return False

    def parse_inbound(self, request: WebhookRequest) -> list[InboundEvent]:
        """Each inbound text of the callback with its index, read or refused on its own."""
        raise InvalidWebhook(f"{self.name}: inbound texts are not supported")

    async def find_sent(self, query: SentQuery) -> str | object:
        """Look an unconfirmed attempt up: its provider message id, NOT_FOUND, ASK_AGAIN
        or CANNOT_TELL.

        Only a provider with an API to list sent texts overrides this.
        """
        return CANNOT_TELL

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections."""


def retry_after_s(response: httpx.Response, now_s: float | None = None) -> float | None:
    """Retry-After in seconds, if the provider sent a usable one (RFC 9110 10.2.3).

    Either delta-seconds or an HTTP-date; ``now_s`` (Unix seconds) is the clock the
    date is measured against, injectable for tests. A date in the past means now.
    """
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        return _retry_after_date_s(raw, time.time() if now_s is None else now_s)
    # "inf" or "nan" would poison every delay computed from it.
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _retry_after_date_s(raw: str, now_s: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # HTTP-dates are GMT; "-0000" parses as naive.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)


def json_object(response: httpx.Response) -> dict[str, object]:
    """The response's JSON object, or {} for anything else (providers' error pages vary)."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def classify_by_table(
    table: Mapping[str, Category], error_code: str | None, http_status: int
) -> Category:
    """The common rule: 429 throttles; the provider's table; 5xx and auth are the
    provider's fault; a 2xx without a code is OK; any other 4xx is permanent."""
    if http_status == 429:
        return Category.THROTTLED
    if error_code and error_code in table:
        return table[error_code]
    if http_status >= 500 or http_status in (401, 403):
        return Category.TRANSIENT
    if 200 <= http_status < 300 and not error_code:
        return Category.OK
    return Category.PERMANENT


# -- what a provider module declares: settings, secrets, how to build it -------------


def http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return v


class ProviderSettings(BaseModel):
    """What every provider has: where to reach it, how long to wait, which numbers to send from.

    A provider's own model adds its fields and gives ``base_url`` a default, so
    its ``[providers.NAME]`` section may be left out of the file.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str
    numbers: list[str] = Field(default_factory=lambda: ["+12015550100"])
    timeout_s: float = Field(10.0, gt=0, le=120)
    max_connections: int = Field(100, ge=1)

    @field_validator("numbers")
    @classmethod
    def _pool(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("the sending-number pool is empty")
        try:
            return [to_e164(n) for n in v]
        except InvalidNumber as exc:
            raise ValueError(f"sending number {exc.reason}") from None

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v).rstrip("/")


def secret_env(field: str) -> str:
    """The environment variable a secret is read from: ``SENDQ_`` + its name."""
    return ENV_PREFIX + field.upper()


@dataclass(frozen=True, slots=True)
class Secrets:
    """One provider's secrets, as settings read them from the environment."""

    provider: str
    values: Mapping[str, SecretStr | None]

    def get(self, field: str) -> str:
        """The secret, or "" when it is not set."""
        value = self.values.get(field)
        return value.get_secret_value() if value is not None else ""

    def require(self, field: str) -> str:
        """The secret; a missing one stops start-up, naming the variable to set."""
        value = self.get(field)
        if not value:
            raise ConfigError(
                f"providers.{self.provider}: no credentials; "
                f"set {secret_env(field)} in the environment"
            )
        return value


SettingsT = TypeVar("SettingsT", bound=ProviderSettings)


@dataclass(frozen=True, eq=False)
class ProviderSpec(Generic[SettingsT]):
    """Everything sendq needs to know of a provider, from the provider's own module.

    Compared and hashed by identity: settings caches the model it builds per
    list of specs.
    """

    name: str
    # The model of its [providers.NAME] section.
    settings: type[SettingsT]
    # Builds the adapter; raises ConfigError for a missing secret or a bad setting.
    build: Callable[[SettingsT, Secrets], Provider]
    # Secret names (``twilio_auth_token``), read only from SENDQ_<NAME> and
    # refused in the config file.
    secrets: tuple[str, ...] = ()
