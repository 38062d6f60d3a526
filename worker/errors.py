"""sendq's exceptions.

    SendqError
    ├── ConfigError            a bad config file or environment; stops start-up
    ├── InvalidInput           a job, number, body or file row that cannot be accepted
    │   ├── InvalidNumber
    │   └── InvalidBody
    ├── RedisUnavailable       the embedded or configured Redis cannot be reached
    └── ProviderError          raised at the transport boundary, never past delivery
        ├── ProviderTimeout    the provider did not answer within the client timeout
        └── ProviderUnreachable  connection refused, reset or DNS failure

Library exceptions (httpx, redis, pydantic) are converted into these where
they cross into sendq: ``raise ProviderTimeout(...) from exc``.
"""

from __future__ import annotations


class SendqError(Exception):
    """Base class of every error sendq raises on purpose."""


class ConfigError(SendqError):
    """The configuration is invalid: names the file, the key and the reason."""


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


class RedisUnavailable(SendqError):
    pass


class ProviderError(SendqError):
    def __init__(self, provider: str, detail: str) -> None:
        super().__init__(f"{provider}: {detail}")
        self.provider = provider
        self.detail = detail


class ProviderTimeout(ProviderError):
    pass


class ProviderUnreachable(ProviderError):
    pass
