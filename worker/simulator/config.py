"""How a simulator instance runs: where it listens, its credentials, its scenario.

Every credential comes from the environment variable sendq itself reads, so a
simulator and a sendq started in the same environment agree by default. When
a variable is unset the simulator uses a fixed default (``DEFAULT_*`` below);
sendq has no defaults for secrets, so set them for both, or read the
defaults from here:

=================================  ===============================================
variable                           used for
=================================  ===============================================
SENDQ_TWILIO_AUTH_TOKEN            Twilio Basic auth password; signs receipts
SENDQ_TELNYX_API_KEY               Telnyx ``Authorization: Bearer`` key
SENDQ_SIM_TELNYX_SEED              hex seed of the ed25519 key signing Telnyx receipts
SENDQ_BANDWIDTH_PASSWORD           Bandwidth Basic auth password
SENDQ_BANDWIDTH_CALLBACK_PASSWORD  Basic auth the simulator puts on Bandwidth callbacks
SENDQ_BANDWIDTH_CLIENT_SECRET      Bandwidth OAuth2 client secret (token endpoint)
SENDQ_PLIVO_AUTH_TOKEN             Plivo Basic auth password; signs receipts (V3)
SENDQ_VONAGE_API_SECRET            Vonage API secret (Basic auth or ``api_secret``)
SENDQ_VONAGE_SIGNATURE_SECRET      Vonage signature secret: signed sends and DLRs
=================================  ===============================================

Non-secret settings are read from sendq's own names too:
``SENDQ_PROVIDERS__BANDWIDTH__USERNAME`` and ``__CALLBACK_USERNAME`` (default
"sendq", as worker/settings.py), ``SENDQ_PROVIDERS__BANDWIDTH__CLIENT_ID``
(default "sendq-oauth-client"), ``SENDQ_PROVIDERS__VONAGE__SIGNATURE_METHOD``
(default "md5hash") and ``SENDQ_WEBHOOKS__PUBLIC_URL`` (default
http://127.0.0.1:8600), from which the account-level receipt URLs are built.

Account identifiers (Twilio account SID, Bandwidth account id, Plivo auth ID,
Vonage API key) are not checked unless set here: any identifier with the right
secret is let in, so sendq's defaults need no matching configuration.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.errors import ConfigError
from worker.simulator.scenario import Scenario

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DEFAULT_AUTH_TOKEN = "sim-auth-token"
AUTH_TOKEN_ENV = "SENDQ_TWILIO_AUTH_TOKEN"

DEFAULT_TELNYX_API_KEY = "KEYsim-telnyx-api-key"
TELNYX_API_KEY_ENV = "SENDQ_TELNYX_API_KEY"
# A fixed seed, so sendq can be configured with the matching public key once.
DEFAULT_TELNYX_SEED_HEX = "8ca15b2ff99307bd9f2d45b0ebbf813fc2a0bde7a778ca847d75bea4aeb681be"
TELNYX_SEED_ENV = "SENDQ_SIM_TELNYX_SEED"
TELNYX_SEED_BYTES = 32

# worker/settings.py BandwidthSettings defaults: the same names on both sides.
DEFAULT_BANDWIDTH_USERNAME = "sendq"
BANDWIDTH_USERNAME_ENV = "SENDQ_PROVIDERS__BANDWIDTH__USERNAME"
DEFAULT_BANDWIDTH_PASSWORD = "sim-bandwidth-password"
BANDWIDTH_PASSWORD_ENV = "SENDQ_BANDWIDTH_PASSWORD"
DEFAULT_BANDWIDTH_CALLBACK_USERNAME = "sendq"
BANDWIDTH_CALLBACK_USERNAME_ENV = "SENDQ_PROVIDERS__BANDWIDTH__CALLBACK_USERNAME"
DEFAULT_BANDWIDTH_CALLBACK_PASSWORD = "sim-bandwidth-callback-password"
BANDWIDTH_CALLBACK_PASSWORD_ENV = "SENDQ_BANDWIDTH_CALLBACK_PASSWORD"
# OAuth2 client credentials; sendq uses them only when its client_id is set.
DEFAULT_BANDWIDTH_CLIENT_ID = "sendq-oauth-client"
BANDWIDTH_CLIENT_ID_ENV = "SENDQ_PROVIDERS__BANDWIDTH__CLIENT_ID"
DEFAULT_BANDWIDTH_CLIENT_SECRET = "sim-bandwidth-client-secret"
BANDWIDTH_CLIENT_SECRET_ENV = "SENDQ_BANDWIDTH_CLIENT_SECRET"

DEFAULT_PLIVO_AUTH_TOKEN = "sim-plivo-auth-token"
PLIVO_AUTH_TOKEN_ENV = "SENDQ_PLIVO_AUTH_TOKEN"

DEFAULT_VONAGE_API_SECRET = "sim-vonage-api-secret"
VONAGE_API_SECRET_ENV = "SENDQ_VONAGE_API_SECRET"
DEFAULT_VONAGE_SIGNATURE_SECRET = "sim-vonage-signature-secret"
VONAGE_SIGNATURE_SECRET_ENV = "SENDQ_VONAGE_SIGNATURE_SECRET"
DEFAULT_VONAGE_SIGNATURE_METHOD = "md5hash"
VONAGE_SIGNATURE_METHOD_ENV = "SENDQ_PROVIDERS__VONAGE__SIGNATURE_METHOD"

# worker/settings.py WebhookSettings.public_url default, and its route.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8600"
PUBLIC_URL_ENV = "SENDQ_WEBHOOKS__PUBLIC_URL"
# Providers whose account (not each send) names a receipt URL: Bandwidth always
# (the application's callback URL), Telnyx and Vonage when a send gives none.
ACCOUNT_CALLBACK_PROVIDERS = ("telnyx", "bandwidth", "vonage")


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _auth_token_from_env() -> str:
    # sendq signs and checks with the same variable, so both sides agree by default.
    return _env(AUTH_TOKEN_ENV, DEFAULT_AUTH_TOKEN)


def _telnyx_seed_from_env() -> bytes:
    raw = _env(TELNYX_SEED_ENV, DEFAULT_TELNYX_SEED_HEX)
    try:
        seed = bytes.fromhex(raw)
    except ValueError:
        raise ConfigError(f"{TELNYX_SEED_ENV}: not hexadecimal") from None
    if len(seed) != TELNYX_SEED_BYTES:
        raise ConfigError(
            f"{TELNYX_SEED_ENV}: an ed25519 seed is {TELNYX_SEED_BYTES} bytes "
            f"({2 * TELNYX_SEED_BYTES} hex digits), this is {len(seed)}"
        )
    return seed


def default_public_url() -> str:
    """sendq's public URL (SENDQ_WEBHOOKS__PUBLIC_URL), without a trailing slash."""
    return _env(PUBLIC_URL_ENV, DEFAULT_PUBLIC_URL).rstrip("/")


def default_callback_urls() -> dict[str, str]:
    """Account-level receipt URLs: sendq's webhook route on its public URL."""
    public_url = default_public_url()
    return {p: f"{public_url}/webhooks/{p}/status" for p in ACCOUNT_CALLBACK_PROVIDERS}


def telnyx_signing_key(seed: bytes | None = None) -> Ed25519PrivateKey:
    """The ed25519 key that signs Telnyx receipts (from the env's seed by default)."""
    # Imported here: only Telnyx needs it, and cryptography is heavy to load.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed or _telnyx_seed_from_env())


def telnyx_public_key(seed: bytes | None = None) -> str:
    """base64 of the raw 32-byte public key: SENDQ_PROVIDERS__TELNYX__PUBLIC_KEY's form."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = telnyx_signing_key(seed).public_key()
    return base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def parse_assignments(pairs: list[str], *, option: str) -> dict[str, str]:
    """``["telnyx=8701", ...]`` -> ``{"telnyx": "8701"}``, for repeatable CLI options."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"{option}: expected PROVIDER=VALUE, got {pair!r}")
        out[name.strip()] = value.strip()
    return out


@dataclass(slots=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8700
    # Twilio: HTTP Basic (account SID, auth token).
    auth_token: str = field(default_factory=_auth_token_from_env)
    # None accepts any account SID in the URL (with the right auth token).
    account_sid: str | None = None
    # Telnyx: Bearer API key; receipts signed with the ed25519 key from this seed.
    telnyx_api_key: str = field(
        default_factory=lambda: _env(TELNYX_API_KEY_ENV, DEFAULT_TELNYX_API_KEY)
    )
    telnyx_seed: bytes = field(default_factory=_telnyx_seed_from_env)
    # Bandwidth: HTTP Basic (username, password); callbacks carry the callback pair.
    bandwidth_username: str = field(
        default_factory=lambda: _env(BANDWIDTH_USERNAME_ENV, DEFAULT_BANDWIDTH_USERNAME)
    )
    bandwidth_password: str = field(
        default_factory=lambda: _env(BANDWIDTH_PASSWORD_ENV, DEFAULT_BANDWIDTH_PASSWORD)
    )
    bandwidth_callback_username: str = field(
        default_factory=lambda: _env(
            BANDWIDTH_CALLBACK_USERNAME_ENV, DEFAULT_BANDWIDTH_CALLBACK_USERNAME
        )
    )
    bandwidth_callback_password: str = field(
        default_factory=lambda: _env(
            BANDWIDTH_CALLBACK_PASSWORD_ENV, DEFAULT_BANDWIDTH_CALLBACK_PASSWORD
        )
    )
    # Bandwidth OAuth2: POST /api/v1/oauth2/token with these as HTTP Basic issues a token.
    bandwidth_client_id: str = field(
        default_factory=lambda: _env(BANDWIDTH_CLIENT_ID_ENV, DEFAULT_BANDWIDTH_CLIENT_ID)
    )
    bandwidth_client_secret: str = field(
        default_factory=lambda: _env(BANDWIDTH_CLIENT_SECRET_ENV, DEFAULT_BANDWIDTH_CLIENT_SECRET)
    )
    bandwidth_account_id: str | None = None
    # Plivo: HTTP Basic (auth ID, auth token); receipts signed V3 with the token.
    plivo_auth_token: str = field(
        default_factory=lambda: _env(PLIVO_AUTH_TOKEN_ENV, DEFAULT_PLIVO_AUTH_TOKEN)
    )
    plivo_auth_id: str | None = None
    # Vonage: API key and secret, or a request signed with the signature secret.
    vonage_api_secret: str = field(
        default_factory=lambda: _env(VONAGE_API_SECRET_ENV, DEFAULT_VONAGE_API_SECRET)
    )
    vonage_signature_secret: str = field(
        default_factory=lambda: _env(VONAGE_SIGNATURE_SECRET_ENV, DEFAULT_VONAGE_SIGNATURE_SECRET)
    )
    vonage_signature_method: str = field(
        default_factory=lambda: _env(VONAGE_SIGNATURE_METHOD_ENV, DEFAULT_VONAGE_SIGNATURE_METHOD)
    )
    vonage_api_key: str | None = None
    # How Vonage delivers DLRs (an account setting): "POST" (form), "POST-JSON" or "GET".
    vonage_dlr_method: str = "POST"
    # Provider -> the account's receipt URL (see ACCOUNT_CALLBACK_PROVIDERS).
    callback_urls: dict[str, str] = field(default_factory=default_callback_urls)
    # Provider -> a port of its own, which refuse rules can really close (gate.py).
    provider_ports: dict[str, int] = field(default_factory=dict)
    scenario: Scenario = field(default_factory=Scenario)
    receipt_workers: int = 32
    receipt_max_tries: int = 6
    receipt_retry_base_s: float = 1.0
    receipt_timeout_s: float = 5.0
    # Where handsets' replies go when the scenario names no [replies] inbound_url: a
    # base URL (``/webhooks/{provider}/inbound`` appended) or a template with
    # ``{provider}``; None: the base of the answered text's receipt URL (replies.py).
    inbound_url: str | None = None
    # Replies are posted by a poster of their own (same tries, backoff and timeout).
    reply_workers: int = 8
