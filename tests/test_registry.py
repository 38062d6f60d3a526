"""Every routed provider is built from settings; a missing secret stops start-up by name."""

from __future__ import annotations

import pytest

from worker.errors import ConfigError
from worker.providers import registry
from worker.settings import load_settings

SECRETS = {
    "twilio_auth_token": "t",
    "bandwidth_password": "p",
    "bandwidth_callback_password": "cb",
    "plivo_auth_token": "t",
    "vonage_api_secret": "s",
    "vonage_signature_secret": "sig",
}


@pytest.fixture(autouse=True)
def no_secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.delenv(f"SENDQ_{name.upper()}", raising=False)


async def test_every_provider_on_a_route_is_built() -> None:
    settings = load_settings(
        routes={"default": ["twilio", "bandwidth", "plivo", "vonage", "console"]}, **SECRETS
    )
    built = registry.build_all(settings)
    assert list(built) == ["twilio", "bandwidth", "plivo", "vonage", "console"]
    assert all(p.name == n for n, p in built.items())
    for provider in built.values():
        await provider.aclose()


@pytest.mark.parametrize(
    ("provider", "env"),
    [
        ("twilio", "SENDQ_TWILIO_AUTH_TOKEN"),
        ("bandwidth", "SENDQ_BANDWIDTH_PASSWORD"),
        ("plivo", "SENDQ_PLIVO_AUTH_TOKEN"),
        ("vonage", "SENDQ_VONAGE_API_SECRET"),
    ],
)
def test_a_routed_provider_without_its_secret_is_a_config_error(provider: str, env: str) -> None:
    settings = load_settings(routes={"default": [provider]})
    with pytest.raises(ConfigError, match=env):
        registry.build_all(settings)
