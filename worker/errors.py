"""sendq's exceptions: the whole tree, in one place.

    SendqError
    ├── ConfigError              a bad config file or environment; stops start-up
    │   └── ScenarioError        a simulator scenario that cannot be used
    ├── InvalidInput             a job, number, body, file or request that cannot be accepted
    │   ├── InvalidNumber
    │   ├── InvalidBody
    │   ├── InvalidWebhook       a webhook body that cannot be parsed (answered 400)
    │   │   └── UnknownSigningKey  signed with a key sendq does not hold (answered 403)
    │   ├── FileError            a whole file is unusable (not one row)
    │   ├── MissingReason        an operator's pause without a reason
    │   └── UnknownProvider      a provider name no module registers
    ├── RedisUnavailable         the embedded or configured Redis cannot be reached
    └── ProviderError            raised at the transport boundary, never past the send path
        ├── TokenRefused         the provider's token URL would not issue a token
        ├── ProviderUnreachable  not sent: refused, DNS, TLS or a connect timeout,
        │                        all before the request was written
        └── ProviderUncertain    may have been sent: the request was (or may have
            │                    been) written and no answer came
            └── ProviderTimeout  no answer within the client timeout

Library exceptions (httpx, redis, pydantic) are converted into these where
they cross into sendq: ``raise ProviderTimeout(...) from exc``. Callers
compare errors by type, never by name.
"""

from __future__ import annotations

from collections.abc import Sequence


class SendqError(Exception):
    """Base class of every error sendq raises on purpose."""


class ConfigError(SendqError):
    """The configuration is invalid: names the file, the key and the reason."""


class ScenarioError(ConfigError):
    """A scenario that cannot be used: names the source, the key and the reason."""


class InvalidInput(SendqError):
    """An input was rejected; ``field`` names it and ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidNumber(InvalidInput):
    pass


class InvalidBody(InvalidInput):
    pass


class InvalidWebhook(InvalidInput, ValueError):
    """A webhook body that cannot be parsed; the receiver answers 400 with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__("webhook", reason)

    def __str__(self) -> str:
        return self.reason


class UnknownSigningKey(InvalidWebhook):
    """A webhook signed with a key id sendq has no secret for (Twilio's SharedKey signing).

    Answered 403, and logged with the key id, so an account that turns on a new
    key before sendq has its secret is noticed rather than silently refused.
    """

    def __init__(self, provider: str, key_id: str) -> None:
        super().__init__(f"{provider}: signed with key {key_id!r}, which sendq does not hold")
        self.provider = provider
        self.key_id = key_id


class FileError(InvalidInput):
    """The whole file is unusable: names the file and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(source, reason)


class MissingReason(InvalidInput):
    """A pause without a reason: the audit record and the alert must say why."""

    def __init__(self) -> None:
        super().__init__("reason", "a pause needs a reason")


class UnknownProvider(InvalidInput):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__("provider", f"unknown provider {name!r}; known: {', '.join(self.known)}")


class RedisUnavailable(SendqError):
    pass


class ProviderError(SendqError):
    def __init__(self, provider: str, detail: str) -> None:
        super().__init__(f"{provider}: {detail}")
        self.provider = provider
        self.detail = detail


class TokenRefused(ProviderError):
    """The token URL would not issue a token: a provider fault, never the text's."""

    def __init__(self, provider: str, token_url: str, status: int, detail: str) -> None:
        super().__init__(provider, f"token request to {token_url} failed: HTTP {status} {detail}")
        self.status = status


class ProviderUnreachable(ProviderError):
    """Provably not sent: nothing reached the provider, so a retry or failover is free."""


class ProviderUncertain(ProviderError):
    """The provider may have taken the text: never retried or failed over blindly."""


class ProviderTimeout(ProviderUncertain):
    pass
