"""The list of providers: the only place that names them all.

Each provider module declares a ``SPEC`` (worker/providers/base.py,
``ProviderSpec``): its ``[providers.NAME]`` settings, its secrets and how to
build it. Settings derive their provider sections, secret fields and known
provider names from this list, and the composition root builds the adapters
from it. Adding a provider is its module plus its SPEC in ``_SHIPPED``.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import SecretStr

from worker.errors import ConfigError
from worker.providers import bandwidth, console, plivo, telnyx, twilio, vonage
from worker.providers.base import Provider, ProviderSettings, ProviderSpec, Secrets


class _Sections(Protocol):
    def section(self, name: str) -> ProviderSettings: ...


class Settings(Protocol):
    """What building reads of worker.settings.Settings. A protocol, because
    settings import this module to derive their provider sections."""

    @property
    def providers(self) -> _Sections: ...

    def secret(self, field: str) -> SecretStr | None: ...

    def routed_providers(self) -> list[str]: ...


_SHIPPED: tuple[ProviderSpec[Any], ...] = (
    twilio.SPEC,
    telnyx.SPEC,
    bandwidth.SPEC,
    plivo.SPEC,
    vonage.SPEC,
    console.SPEC,
)
# Name -> spec, in registration order (the order settings and errors list them in).
PROVIDERS: dict[str, ProviderSpec[Any]] = {}


def register(spec: ProviderSpec[Any]) -> None:
    """Add a provider; settings loaded after this accept its section and secrets."""
    if spec.name in PROVIDERS:
        raise ValueError(f"provider {spec.name!r} is registered already")
    clash = set(spec.secrets) & set(secret_fields())
    if clash:
        raise ValueError(f"provider {spec.name!r}: secret {sorted(clash)[0]!r} is taken")
    PROVIDERS[spec.name] = spec


def specs() -> tuple[ProviderSpec[Any], ...]:
    return tuple(PROVIDERS.values())


def names() -> tuple[str, ...]:
    return tuple(PROVIDERS)


def secret_fields() -> tuple[str, ...]:
    """Every provider secret's settings name, e.g. ``twilio_auth_token``."""
    return tuple(field for spec in PROVIDERS.values() for field in spec.secrets)


def build(name: str, settings: Settings) -> Provider:
    try:
        spec = PROVIDERS[name]
    except KeyError:
        raise ConfigError(f"routes: provider {name!r} has no adapter") from None
    secrets = Secrets(name, {field: settings.secret(field) for field in spec.secrets})
    return spec.build(settings.providers.section(name), secrets)


def build_all(settings: Settings) -> dict[str, Provider]:
    """Every provider a route uses; a missing secret stops start-up here."""
    return {name: build(name, settings) for name in settings.routed_providers()}


for _spec in _SHIPPED:
    register(_spec)
