"""Build the configured providers from settings. The only place that names them all."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from pydantic import SecretStr

from worker.errors import ConfigError
from worker.providers.base import Provider
from worker.settings import Settings

log = structlog.get_logger("sendq.providers")
# Bandwidth decommissions API users (HTTP Basic) on this day; OAuth2 only after it.
BANDWIDTH_BASIC_ENDS = "2026-12-02"


def _secret(value: SecretStr | None, env: str, provider: str) -> str:
    if value is None or not value.get_secret_value():
        raise ConfigError(f"providers.{provider}: no credentials; set {env} in the environment")
    return value.get_secret_value()


def _twilio(s: Settings) -> Provider:
    from worker.providers.twilio import TwilioProvider

    c = s.providers.twilio
    return TwilioProvider(
        account_sid=c.account_sid,
        auth_token=_secret(s.twilio_auth_token, "SENDQ_TWILIO_AUTH_TOKEN", "twilio"),
        base_url=c.base_url,
        timeout_s=c.timeout_s,
        max_connections=c.max_connections,
    )


def _telnyx(s: Settings) -> Provider:
    from worker.providers.telnyx import TelnyxProvider

    c = s.providers.telnyx
    api_key = _secret(s.telnyx_api_key, "SENDQ_TELNYX_API_KEY", "telnyx")
    if not c.public_key.strip():
        # Receipts are refused without it, so no text sent through Telnyx could complete.
        raise ConfigError(
            "providers.telnyx.public_key: empty; set it (or SENDQ_PROVIDERS__TELNYX__PUBLIC_KEY) "
            "to the base64 public key Telnyx signs webhooks with"
        )
    return TelnyxProvider(
        api_key=api_key,
        public_key=c.public_key,
        tolerance_s=c.tolerance_s,
        base_url=c.base_url,
        timeout_s=c.timeout_s,
        max_connections=c.max_connections,
    )


def _bandwidth(s: Settings) -> Provider:
    from worker.providers.bandwidth import BandwidthProvider

    c = s.providers.bandwidth
    # OAuth2 client credentials when a client id is set, else HTTP Basic.
    password = client_secret = ""
    if c.client_id:
        client_secret = _secret(
            s.bandwidth_client_secret, "SENDQ_BANDWIDTH_CLIENT_SECRET", "bandwidth"
        )
    else:
        password = _secret(s.bandwidth_password, "SENDQ_BANDWIDTH_PASSWORD", "bandwidth")
        log.warning(
            "bandwidth uses HTTP Basic auth, which Bandwidth stops accepting on "
            f"{BANDWIDTH_BASIC_ENDS}; set providers.bandwidth.client_id and "
            "SENDQ_BANDWIDTH_CLIENT_SECRET to use OAuth2",
            provider="bandwidth",
        )
    return BandwidthProvider(
        account_id=c.account_id,
        application_id=c.application_id,
        username=c.username,
        password=password,
        client_id=c.client_id,
        client_secret=client_secret,
        token_url=c.token_url,
        callback_username=c.callback_username,
        callback_password=_secret(
            s.bandwidth_callback_password, "SENDQ_BANDWIDTH_CALLBACK_PASSWORD", "bandwidth"
        ),
        base_url=c.base_url,
        timeout_s=c.timeout_s,
        max_connections=c.max_connections,
    )


def _plivo(s: Settings) -> Provider:
    from worker.providers.plivo import PlivoProvider

    c = s.providers.plivo
    return PlivoProvider(
        auth_id=c.auth_id,
        auth_token=_secret(s.plivo_auth_token, "SENDQ_PLIVO_AUTH_TOKEN", "plivo"),
        base_url=c.base_url,
        timeout_s=c.timeout_s,
        max_connections=c.max_connections,
    )


def _vonage(s: Settings) -> Provider:
    from worker.providers.vonage import VonageProvider

    c = s.providers.vonage
    api_secret = None
    if not c.sign_requests:
        api_secret = _secret(s.vonage_api_secret, "SENDQ_VONAGE_API_SECRET", "vonage")
    return VonageProvider(
        api_key=c.api_key,
        api_secret=api_secret,
        signature_secret=_secret(
            s.vonage_signature_secret, "SENDQ_VONAGE_SIGNATURE_SECRET", "vonage"
        ),
        signature_method=c.signature_method,
        sign_requests=c.sign_requests,
        tolerance_s=c.tolerance_s,
        base_url=c.base_url,
        timeout_s=c.timeout_s,
        max_connections=c.max_connections,
    )


def _console(s: Settings) -> Provider:
    from worker.providers.console import ConsoleProvider

    return ConsoleProvider()


BUILDERS: dict[str, Callable[[Settings], Provider]] = {
    "twilio": _twilio,
    "telnyx": _telnyx,
    "bandwidth": _bandwidth,
    "plivo": _plivo,
    "vonage": _vonage,
    "console": _console,
}


def build(name: str, settings: Settings) -> Provider:
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise ConfigError(f"routes: provider {name!r} has no adapter") from None
    return builder(settings)


def build_all(settings: Settings) -> dict[str, Provider]:
    """Every provider a route uses; a missing secret stops start-up here."""
    return {name: build(name, settings) for name in settings.routed_providers()}
