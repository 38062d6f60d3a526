"""Every routed provider is built from settings; a missing secret stops start-up by name."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from worker.errors import ConfigError
from worker.providers import registry
from worker.settings import load_settings

SECRETS = {
    "twilio_auth_token": "t",
    "telnyx_api_key": "k",
    "bandwidth_password": "p",
    "bandwidth_callback_password": "cb",
    "plivo_auth_token": "t",
    "vonage_api_secret": "s",
    "vonage_signature_secret": "sig",
}


TELNYX_PUBLIC_KEY = base64.b64encode(
    Ed25519PrivateKey.generate().public_key().public_bytes_raw()
).decode()
TELNYX = {"telnyx": {"public_key": TELNYX_PUBLIC_KEY}}


@pytest.fixture(autouse=True)
def no_secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.delenv(f"SENDQ_{name.upper()}", raising=False)


async def test_every_provider_on_a_route_is_built() -> None:
    names = ["twilio", "telnyx", "bandwidth", "plivo", "vonage", "console"]
    settings = load_settings(routes={"default": names}, providers=TELNYX, **SECRETS)
    built = registry.build_all(settings)
    assert list(built) == names
    assert all(p.name == n for n, p in built.items())
    for provider in built.values():
        await provider.aclose()


@pytest.mark.parametrize(
    ("provider", "env"),
    [
        ("twilio", "SENDQ_TWILIO_AUTH_TOKEN"),
        ("telnyx", "SENDQ_TELNYX_API_KEY"),
        ("bandwidth", "SENDQ_BANDWIDTH_PASSWORD"),
        ("plivo", "SENDQ_PLIVO_AUTH_TOKEN"),
        ("vonage", "SENDQ_VONAGE_API_SECRET"),
    ],
)
def test_a_routed_provider_without_its_secret_is_a_config_error(provider: str, env: str) -> None:
    settings = load_settings(routes={"default": [provider]})
    with pytest.raises(ConfigError, match=env):
        registry.build_all(settings)


@pytest.mark.parametrize(
    "public_key", ["", "   ", "not-a-key", base64.b64encode(b"x" * 31).decode()]
)
def test_telnyx_without_a_usable_public_key_is_a_config_error(public_key: str) -> None:
    # Receipts cannot be verified without it, so start-up stops rather than every receipt.
    settings = load_settings(
        routes={"default": ["telnyx"]},
        providers={"telnyx": {"public_key": public_key}},
        telnyx_api_key="k",
    )
    with pytest.raises(ConfigError, match=r"providers\.telnyx\.public_key") as caught:
        registry.build_all(settings)
    assert "SENDQ_PROVIDERS__TELNYX__PUBLIC_KEY" in str(caught.value)
