"""Every routed provider is built from settings; a missing secret stops start-up by name."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests import acme_provider
from worker import settings as settings_module
from worker.errors import ConfigError
from worker.providers import registry
from worker.providers.base import ProviderSpec
from worker.services import Stack
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


# -- a provider is one file: a throwaway sixth one, registered, is taken everywhere ---------

ACME_ENV = "SENDQ_ACME_API_KEY"


@pytest.fixture
def acme(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """acme registered for this test only; returns an empty config file to write to."""
    monkeypatch.setattr(registry, "PROVIDERS", dict(registry.PROVIDERS))
    registry.register(acme_provider.SPEC)
    monkeypatch.delenv(ACME_ENV, raising=False)
    config = tmp_path / "sendq.toml"
    config.write_text("")
    monkeypatch.setenv("SENDQ_CONFIG", str(config))
    return config


def test_an_unregistered_provider_is_unknown_to_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "sendq.toml"
    config.write_text('[providers.acme]\naccount = "acct-7"\n')
    monkeypatch.setenv("SENDQ_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"providers\.acme .*is not a known setting"):
        load_settings()
    with pytest.raises(ConfigError, match="unknown provider 'acme'"):
        load_settings(routes={"default": ["acme"]})


def test_settings_take_a_registered_providers_section_and_its_secret_from_the_env(
    acme: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme.write_text(
        '[providers.acme]\naccount = "acct-7"\nnumbers = ["+1 201 555 0199"]\n'
        '[routes]\ndefault = ["acme", "twilio"]\n'
    )
    monkeypatch.setenv(ACME_ENV, "acme-key-1")
    monkeypatch.setenv("SENDQ_PROVIDERS__ACME__TIMEOUT_S", "3")

    settings = load_settings()

    section = settings.providers.acme
    assert isinstance(section, acme_provider.AcmeSettings)
    assert settings.providers.section("acme") is section
    assert (section.account, section.numbers, section.timeout_s) == ("acct-7", ["+12015550199"], 3)
    assert section.base_url == "https://api.acme.invalid"
    assert settings.acme_api_key is not None
    assert settings.acme_api_key.get_secret_value() == "acme-key-1"
    assert settings.secret("acme_api_key") == settings.acme_api_key
    assert settings.routed_providers() == ["acme", "twilio"]
    assert "acme" in settings_module.provider_names()
    assert "acme_api_key" in settings_module.secret_fields()


def test_a_registered_providers_section_is_validated_by_its_own_model(acme: Path) -> None:
    acme.write_text('[providers.acme]\naccount = ""\ntimeout_s = -1\n')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert str(acme) in message
    assert "providers.acme.account (env SENDQ_PROVIDERS__ACME__ACCOUNT)" in message
    assert "providers.acme.timeout_s (env SENDQ_PROVIDERS__ACME__TIMEOUT_S)" in message


def test_a_registered_providers_secret_in_the_config_file_is_refused(acme: Path) -> None:
    acme.write_text('acme_api_key = "leaked-in-git"\n')
    with pytest.raises(ConfigError, match="only from the environment") as caught:
        load_settings()
    assert ACME_ENV in str(caught.value)
    assert "leaked-in-git" not in str(caught.value)


async def test_build_all_builds_a_registered_provider(
    acme: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ACME_ENV, "acme-key-2")
    settings = load_settings(routes={"default": ["acme"]}, providers={"acme": {"account": "a9"}})

    built = registry.build_all(settings)

    assert list(built) == ["acme"]
    provider = built["acme"]
    assert isinstance(provider, acme_provider.AcmeProvider)
    assert (provider.api_key, provider.config.account) == ("acme-key-2", "a9")


def test_a_registered_provider_without_its_secret_is_a_config_error(acme: Path) -> None:
    settings = load_settings(routes={"default": ["acme"]})
    with pytest.raises(ConfigError, match=f"providers.acme: no credentials; set {ACME_ENV}"):
        registry.build_all(settings)


def test_a_stack_points_a_registered_provider_at_the_simulator_with_its_secret(
    acme: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = Stack(redis_url="redis://127.0.0.1:9/0", workdir=tmp_path / "logs")
    env = stack.provider_env()

    assert env["SENDQ_PROVIDERS__ACME__BASE_URL"] == stack.sim_url
    assert env[ACME_ENV]
    # What the stack's processes would load from that environment.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    built = registry.build_all(load_settings(routes={"default": ["acme"]}))
    provider = built["acme"]
    assert isinstance(provider, acme_provider.AcmeProvider)
    assert (provider.config.base_url, provider.api_key) == (stack.sim_url, env[ACME_ENV])


def test_a_provider_cannot_be_registered_twice_or_take_anothers_secret(
    acme: Path,
) -> None:
    with pytest.raises(ValueError, match="registered already"):
        registry.register(acme_provider.SPEC)
    thief = ProviderSpec(
        "thief", acme_provider.AcmeSettings, acme_provider.build, ("acme_api_key",)
    )
    with pytest.raises(ValueError, match="'acme_api_key' is taken"):
        registry.register(thief)
