"""Settings: ``config/sendq.toml`` plus ``SENDQ_*`` environment overrides.

Secrets (provider auth tokens, the admin token) come only from the
environment; a secret found in the file is a config error, so it never lands
in version control by accident.

Where the file lives: ``$SENDQ_CONFIG``, else ``./config/sendq.toml`` if it
exists, else the embedded defaults (the demo runs on those).
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from worker.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/sendq.toml")
ENV_PREFIX = "SENDQ_"
SECRET_FIELDS = frozenset(
    {
        "twilio_auth_token",
        "telnyx_api_key",
        "bandwidth_password",
        "bandwidth_callback_password",
        "bandwidth_client_secret",
        "plivo_auth_token",
        "vonage_api_secret",
        "vonage_signature_secret",
        "admin_token",
    }
)
PROVIDER_NAMES = ("twilio", "telnyx", "bandwidth", "plivo", "vonage", "console")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkerSettings(_Section):
    queue: str = "sendq"
    processes: int = Field(2, ge=1, le=64)
    threads: int = Field(16, ge=1, le=256)
    max_attempts: int = Field(8, ge=1, le=100)
    retry_base_ms: int = Field(1000, ge=10)
    retry_cap_ms: int = Field(300_000, ge=100)
    # An ambiguous answer (unknown error, handset unreachable) may succeed later:
    # retried like a transient one when true, ended "failed" at once when false.
    retry_ambiguous: bool = True
    # A worker that dies mid-send leaves its text "sending"; after this lease
    # another worker may take it over (and counts a possible double send).
    send_lease_s: float = Field(60.0, gt=0)
    shutdown_timeout_s: float = Field(30.0, gt=0)
    # Idle consumers (and the delay queue) are checked this often.
    poll_ms: int = Field(50, ge=10, le=5000)
    # A worker silent this long is dead: its unacked texts go back on the queue.
    heartbeat_timeout_s: float = Field(15.0, ge=1, le=600)
    # With every queue empty, a text this overdue has no message coming: it gets one.
    orphan_after_s: float = Field(60.0, ge=1)
    sweep_s: float = Field(30.0, ge=1)


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return v


class WebhookSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8600, ge=0, le=65535)
    # The base URL providers call back on; signatures are computed over it.
    public_url: str = "http://127.0.0.1:8600"

    @field_validator("public_url")
    @classmethod
    def _http(cls, v: str) -> str:
        return _http_url(v).rstrip("/")


class ProviderSettings(_Section):
    """What every provider has: where to reach it, how long to wait, which numbers to send from."""

    base_url: str
    numbers: list[str] = Field(default_factory=lambda: ["+12015550100"])
    timeout_s: float = Field(10.0, gt=0, le=120)
    max_connections: int = Field(100, ge=1)

    @field_validator("numbers")
    @classmethod
    def _pool(cls, v: list[str]) -> list[str]:
        from worker.errors import InvalidNumber
        from worker.phone import to_e164

        if not v:
            raise ValueError("the sending-number pool is empty")
        try:
            return [to_e164(n) for n in v]
        except InvalidNumber as exc:
            raise ValueError(f"sending number {exc.reason}") from None

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v).rstrip("/")


class TwilioSettings(ProviderSettings):
    base_url: str = "https://api.twilio.com"
    account_sid: str = "AC00000000000000000000000000000000"


class TelnyxSettings(ProviderSettings):
    base_url: str = "https://api.telnyx.com"
    # Telnyx's webhook public key (base64 ed25519); not a secret.
    public_key: str = ""
    tolerance_s: float = Field(300.0, gt=0)


class BandwidthSettings(ProviderSettings):
    base_url: str = "https://messaging.bandwidth.com"
    account_id: str = "0000000"
    application_id: str = "00000000-0000-0000-0000-000000000000"
    username: str = "sendq"
    callback_username: str = "sendq"
    # OAuth2 client credentials: set client_id (its secret comes from
    # SENDQ_BANDWIDTH_CLIENT_SECRET) and sends use bearer tokens from token_url
    # instead of HTTP Basic with username and password.
    client_id: str = ""
    token_url: str = "https://api.bandwidth.com/api/v1/oauth2/token"

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, v: str) -> str:
        return _http_url(v)


class PlivoSettings(ProviderSettings):
    base_url: str = "https://api.plivo.com"
    auth_id: str = Field("MA" + "0" * 18, pattern=r"^(MA|SA)[A-Z0-9]{18}$")


class VonageSettings(ProviderSettings):
    base_url: str = "https://rest.nexmo.com"
    api_key: str = "00000000"
    tolerance_s: float = Field(300.0, gt=0)
    # Must match the account's signature setting in Vonage's dashboard.
    signature_method: Literal["md5hash", "md5hmac", "sha1hmac", "sha256hmac", "sha512hmac"] = (
        "md5hash"
    )
    # Sign sends with the signature secret instead of sending the API secret.
    sign_requests: bool = False


class ConsoleSettings(ProviderSettings):
    """Logs texts instead of sending them: for trying sendq out."""

    base_url: str = "http://console.invalid"


class ProvidersSettings(_Section):
    twilio: TwilioSettings = Field(default_factory=lambda: TwilioSettings())
    telnyx: TelnyxSettings = Field(default_factory=lambda: TelnyxSettings())
    bandwidth: BandwidthSettings = Field(default_factory=lambda: BandwidthSettings())
    plivo: PlivoSettings = Field(default_factory=lambda: PlivoSettings())
    vonage: VonageSettings = Field(default_factory=lambda: VonageSettings())
    console: ConsoleSettings = Field(default_factory=lambda: ConsoleSettings())


class RateSettings(_Section):
    """``rate`` segments per ``period_s``, in bursts of up to ``burst``."""

    rate: float = Field(gt=0)
    period_s: float = Field(1.0, gt=0)
    burst: int = Field(1, ge=1)


class CarrierLimitSettings(_Section):
    """Per carrier x campaign: AT&T's per-minute class, T-Mobile's daily brand cap."""

    rate: float | None = Field(None, gt=0)
    period_s: float = Field(60.0, gt=0)
    burst: int = Field(1, ge=1)
    daily_cap: int | None = Field(None, ge=1)
    tz: str = "America/Los_Angeles"

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class LimitsSettings(_Section):
    # A wait up to this long is slept in the worker; a longer one is a delayed redelivery.
    short_wait_ms: int = Field(250, ge=0, le=5000)
    # Per provider account.
    providers: dict[str, RateSettings] = Field(default_factory=dict)
    # Per sending number, by type; a number's type comes from `numbers`.
    number_types: dict[str, RateSettings] = Field(
        default_factory=lambda: {
            "long_code": RateSettings(rate=1),
            "toll_free": RateSettings(rate=3),
            "short_code": RateSettings(rate=100, burst=10),
        }
    )
    # Sending number -> its type (a key of number_types), or its own rate.
    numbers: dict[str, str | RateSettings] = Field(default_factory=dict)
    # The type of numbers not listed in `numbers`; "" leaves them unlimited.
    default_number_type: str = ""
    # Per carrier (att, tmobile, verizon, ...), applied per campaign.
    carriers: dict[str, CarrierLimitSettings] = Field(default_factory=dict)

    def number_rate(self, number: str) -> RateSettings | None:
        kind = self.numbers.get(number, self.default_number_type)
        if isinstance(kind, RateSettings):
            return kind
        return self.number_types.get(kind) if kind else None


class BreakerSettings(_Section):
    window_s: float = Field(30.0, gt=0)
    min_calls: int = Field(20, ge=1)
    failure_rate: float = Field(0.5, gt=0, le=1)
    consecutive: int = Field(5, ge=1)
    cooldown_s: float = Field(5.0, gt=0)
    cooldown_max_s: float = Field(300.0, gt=0)
    probes: int = Field(3, ge=1)
    # Probes that have not reported back within this long are given up on and
    # new ones may go, so a lost probe never leaves the breaker half-open.
    probe_timeout_s: float = Field(30.0, gt=0)
    # Workers trust a "closed" answer this long, and batch successes over it.
    cache_ms: int = Field(200, ge=0, le=5000)


class CarrierBreakerSettings(BreakerSettings):
    """Per carrier x campaign. Tuned to catch 10% filtering within a few hundred texts."""

    window_s: float = Field(120.0, gt=0)
    min_calls: int = Field(40, ge=1)
    failure_rate: float = Field(0.05, gt=0, le=1)
    consecutive: int = Field(5, ge=1)
    cooldown_s: float = Field(60.0, gt=0)
    cooldown_max_s: float = Field(1800.0, gt=0)
    probes: int = Field(3, ge=1)
    # A carrier probe reports back through its delivery receipt, which can be late.
    probe_timeout_s: float = Field(120.0, gt=0)
    # Workers may trust a "closed" answer this long (saves a Redis call a text),
    # but then a pause reaches them only within it. 0: no text is ever admitted
    # after a carrier opens or is paused.
    cache_ms: int = Field(0, ge=0, le=5000)
    # How much an ambiguous result (Twilio 30008/30003, ...) counts as a block.
    ambiguous_weight: float = Field(0.3, ge=0, le=1)


class BreakersSettings(_Section):
    provider: BreakerSettings = Field(default_factory=lambda: BreakerSettings())
    carrier: CarrierBreakerSettings = Field(default_factory=lambda: CarrierBreakerSettings())
    # How often each worker process checks for holds to release and probes to send.
    tick_s: float = Field(1.0, gt=0, le=60)


class CarriersSettings(_Section):
    # "twilio" asks Twilio Lookup v2 (line_type_intelligence); "none" never looks up.
    lookup: Literal["twilio", "none"] = "twilio"
    lookup_url: str = "https://lookups.twilio.com"
    cache_ttl_s: int = Field(30 * 24 * 3600, ge=60)
    # A CSV of number,carrier rows that beats any lookup.
    override_file: Path | None = None

    @field_validator("override_file")
    @classmethod
    def _exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v


class AlertsSettings(_Section):
    # Each breaker open/pause/resume/close is POSTed as JSON (Slack-compatible "text").
    urls: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    redis_url: str | None = None
    data_dir: Path = Path(".sendq")
    default_region: str = "US"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    worker: WorkerSettings = Field(default_factory=lambda: WorkerSettings())
    webhooks: WebhookSettings = Field(default_factory=lambda: WebhookSettings())
    providers: ProvidersSettings = Field(default_factory=lambda: ProvidersSettings())
    # Per campaign, the providers to try in order; "default" serves the rest.
    routes: dict[str, list[str]] = Field(default_factory=lambda: {"default": ["twilio"]})
    breakers: BreakersSettings = Field(default_factory=lambda: BreakersSettings())
    limits: LimitsSettings = Field(default_factory=lambda: LimitsSettings())
    carriers: CarriersSettings = Field(default_factory=lambda: CarriersSettings())
    alerts: AlertsSettings = Field(default_factory=lambda: AlertsSettings())

    twilio_auth_token: SecretStr | None = None
    telnyx_api_key: SecretStr | None = None
    bandwidth_password: SecretStr | None = None
    bandwidth_callback_password: SecretStr | None = None
    bandwidth_client_secret: SecretStr | None = None
    plivo_auth_token: SecretStr | None = None
    vonage_api_secret: SecretStr | None = None
    vonage_signature_secret: SecretStr | None = None
    admin_token: SecretStr | None = None

    @field_validator("routes")
    @classmethod
    def _routes(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        if "default" not in v:
            raise ValueError('needs a "default" route')
        for campaign, route in v.items():
            if not route:
                raise ValueError(f"route {campaign!r} names no provider")
            unknown = [p for p in route if p not in PROVIDER_NAMES]
            if unknown:
                raise ValueError(
                    f"route {campaign!r} names unknown provider {unknown[0]!r}; "
                    f"known: {', '.join(PROVIDER_NAMES)}"
                )
            if len(set(route)) != len(route):
                raise ValueError(f"route {campaign!r} names a provider twice")
        return v

    @model_validator(mode="after")
    def _limits_name_known_things(self) -> Settings:
        lim = self.limits
        for name in lim.providers:
            if name not in PROVIDER_NAMES:
                raise ValueError(f"limits.providers.{name}: unknown provider")
        for number, kind in lim.numbers.items():
            if isinstance(kind, str) and kind not in lim.number_types:
                raise ValueError(f"limits.numbers.{number}: unknown number type {kind!r}")
        if lim.default_number_type and lim.default_number_type not in lim.number_types:
            raise ValueError(
                f"limits.default_number_type: unknown type {lim.default_number_type!r}"
            )
        return self

    def routed_providers(self) -> list[str]:
        """Every provider some route uses, in first-use order."""
        return list(dict.fromkeys(p for route in self.routes.values() for p in route))

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file; the environment source outranks it."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ is overridden

    def __call__(self) -> dict[str, Any]:
        path = config_path()
        return read_toml(path) if path else {}


def config_path() -> Path | None:
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{path}: SENDQ_CONFIG names a file that does not exist")
        return path
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    for name in SECRET_FIELDS & data.keys():
        raise ConfigError(
            f"{path}: {name}: secrets are read only from the environment; "
            f"remove it from the file and set {ENV_PREFIX}{name.upper()}"
        )
    return data


def load_settings(**overrides: Any) -> Settings:
    """Build and validate settings, turning every failure into one ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    source = str(config_path() or "defaults")
    lines = [f"invalid configuration ({source} and {ENV_PREFIX}* environment):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        env = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "is not a known setting"
        if not key:  # a check across several settings names them itself
            lines.append(f"  {reason}")
            continue
        lines.append(f"  {key} (env {env}): {reason} (got {err.get('input')!r:.60})")
    return "\n".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
