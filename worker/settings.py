"""Settings: ``config/sendq.toml`` plus ``SENDQ_*`` environment overrides.

Secrets (provider auth tokens, the admin token) come only from the
environment; a secret found in the file is a config error, so it never lands
in version control by accident.

Where the file lives: ``$SENDQ_CONFIG``, else ``./config/sendq.toml`` if it
exists, else the embedded defaults (the demo runs on those).

Providers are not named here. Each provider module declares its
``[providers.NAME]`` model and its secrets; worker/providers/registry.py lists
them, and ``load_settings`` builds a ``Settings`` subclass with one section and
the secret fields of each (``settings.providers.twilio.numbers``,
``settings.twilio_auth_token``). So build settings with ``load_settings()`` or
``get_settings()``; a bare ``Settings()`` has no provider in it.
"""

from __future__ import annotations

import os
import tomllib
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from worker.config_errors import describe
from worker.errors import ConfigError
from worker.exposure_settings import ExposureSettings
from worker.providers import registry
from worker.providers.base import ENV_PREFIX, ProviderSettings, ProviderSpec, http_url
from worker.watch.settings import WatchSettings

DEFAULT_CONFIG_PATH = Path("config/sendq.toml")
# sendq's own secrets; each provider's come from the registry.
OWN_SECRET_FIELDS = ("admin_token",)


def provider_names() -> tuple[str, ...]:
    """Every registered provider, in registry order."""
    return registry.names()


def secret_fields() -> frozenset[str]:
    """Every setting read only from the environment, never from the file."""
    return frozenset({*registry.secret_fields(), *OWN_SECRET_FIELDS})


# As the registry stood when settings were first imported: for readers that
# want a constant. A provider registered later is seen by the functions above.
SECRET_FIELDS = secret_fields()
PROVIDER_NAMES = provider_names()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkerSettings(_Section):
    queue: str = "sendq"
    processes: int = Field(2, ge=1, le=64)
    threads: int = Field(16, ge=1, le=256)
    max_attempts: int = Field(8, ge=1, le=100)
    retry_base_ms: int = Field(1000, ge=10)
    retry_cap_ms: int = Field(300_000, ge=100)
    # A send whose outcome is unknown (a timeout or dropped connection after the
    # request was written, an ambiguous answer) goes "unconfirmed" and waits this
    # long for evidence (a receipt, the provider's look-up) before policy decides.
    unconfirmed_wait_s: float = Field(120.0, gt=0, le=86_400)
    # With no evidence: "fail" leaves it unconfirmed (final, never sent twice);
    # "resend" sends it again, counted as a possible double. See README.
    on_unconfirmed: Literal["fail", "resend"] = "fail"
    # Each text is worked on under a lease, renewed while its worker lives; a
    # worker cut off or dead for this long loses it, and another takes the text
    # over (through "unconfirmed" if an HTTP call may have gone out).
    send_lease_s: float = Field(60.0, ge=1)
    shutdown_timeout_s: float = Field(30.0, gt=0)
    # Idle consumers (and the delay queue) are checked this often.
    poll_ms: int = Field(50, ge=10, le=5000)
    # A worker silent this long is dead: its unacked texts go back on the queue.
    heartbeat_timeout_s: float = Field(15.0, ge=1, le=600)
    # With every queue empty, a text this overdue has no message coming: it gets one.
    orphan_after_s: float = Field(60.0, ge=1)
    sweep_s: float = Field(30.0, ge=1)


class WebhookSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8600, ge=0, le=65535)
    # The base URL providers call back on; signatures are computed over it.
    public_url: str = "http://127.0.0.1:8600"

    @field_validator("public_url")
    @classmethod
    def _http(cls, v: str) -> str:
        return http_url(v).rstrip("/")


class ProvidersSettings(_Section):
    """``[providers.NAME]`` for each registered provider; the fields are added from
    the registry (``_settings_model``), each provider's own settings model."""

    def section(self, name: str) -> ProviderSettings:
        """One provider's settings; ``settings.providers.twilio`` reads the same."""
        section = getattr(self, name, None)
        if not isinstance(section, ProviderSettings):
            raise KeyError(name)
        return section

    if TYPE_CHECKING:
        # One attribute per registered provider, its own settings model.
        def __getattr__(self, name: str) -> Any: ...


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
    # Texts leave up to this long after their slot (measured: p99 20 ms, worst 27 ms
    # on a 2-core machine); slots are spaced for it, so a late text never makes a
    # provider's one-second window hold more than the rate plus its burst.
    arrival_margin_ms: int = Field(30, ge=0, le=1000)
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
    # Per carrier x campaign: how many texts may be out with no final receipt yet
    # (the exposure limit; off unless max_unconfirmed is set).
    carrier: ExposureSettings = Field(default_factory=lambda: ExposureSettings())

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


class ReceiptSettings(_Section):
    # A sent text whose final receipt has not come this long after it was sent ends
    # "unconfirmed" (final for accounting; a late receipt still settles it). Carriers
    # deliver most receipts within seconds; some hold them for minutes.
    timeout_s: float = Field(600.0, ge=1, le=7 * 86_400)


class AlertsSettings(_Section):
    # Each breaker open/pause/resume/close is POSTed as JSON (Slack-compatible "text").
    urls: list[str] = Field(default_factory=list)


def _region(value: str) -> str:
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(
            f"{value!r} is not a region code phonenumbers knows (ISO 3166, e.g. US, MX)"
        )
    return value


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (an IANA name, e.g. America/Chicago)"
        ) from None
    return value


class CampaignSettings(_Section):
    """``[campaigns.NAME]``: what differs for one campaign."""

    # How its numbers without a country code are read (else the top-level default_region).
    default_region: str | None = None
    # The organisation whose opt-out list (and replies) the campaign uses; else default_org.
    org: str | None = None
    # No text reaches a recipient in this window of their local time, e.g. "21:00-08:00".
    quiet_hours: str | None = None
    # Where a number's area spans several zones: "strictest" holds it while it is quiet
    # in any of them; "campaign" uses time_zone when it is one of them.
    quiet_zone_policy: Literal["strictest", "campaign"] = "strictest"
    # The campaign's own zone: for numbers in several zones (policy "campaign"), and
    # for numbers phonenumbers cannot place at all.
    time_zone: str | None = None
    # Narrower windows some US states set (FL, OK, MD, MS, NJ, CT, TX, ...), on top of
    # quiet_hours. See README: not legal advice.
    state_rules: bool = True
    # No text of the campaign goes out after this (an aware datetime); a text's own
    # send_before, when earlier, wins.
    send_before: datetime | None = None

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, v: str | None) -> str | None:
        return None if v is None else _region(v)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        return None if v is None else _zone(v)

    @field_validator("org")
    @classmethod
    def _org_name(cls, v: str | None) -> str | None:
        return None if v is None else _org(v)

    @field_validator("quiet_hours")
    @classmethod
    def _window(cls, v: str | None) -> str | None:
        if not v:
            return None
        from worker.quiet import parse_window

        parse_window(v)  # raises ValueError with the reason
        return v

    @field_validator("send_before")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("needs a time zone offset, e.g. 2026-11-03T20:00:00-05:00")
        return v


def _org(value: str) -> str:
    from worker.models import ORG_RE

    if not ORG_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an organisation name (letters, digits, _ . -)")
    return value


class OrgSettings(_Section):
    """``[orgs.NAME]``: one organisation's replies; "" sends none."""

    # Sent once to a person whose STOP was taken, through the provider and number it came to.
    stop_reply: str = ""
    # Sent to a person who texts HELP (or INFO).
    help_reply: str = ""


class OptoutSettings(_Section):
    # A message that may be an opt-out ("please stop texting me", "wrong number",
    # "stpo"): "suppress" takes it as one (the FCC's 2024 order asks that any
    # reasonable means be honoured; a wrong guess costs one contact, a missed one a
    # complaint), "flag" only lists it in `sendq optouts review`.
    possible: Literal["suppress", "flag"] = "suppress"
    # Extra opt-out keywords, e.g. other languages ("ALTO", "PARAR", "ARRET").
    keywords: list[str] = Field(default_factory=list)
    # Extra opt-in keywords (START, UNSTOP and YES always are).
    optin_keywords: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    redis_url: str | None = None
    data_dir: Path = Path(".sendq")
    # How a number without its country code is read ("55 1234 5678" is Mexico City
    # in MX and New Jersey in US); a campaign may set its own.
    default_region: str = "US"
    campaigns: dict[str, CampaignSettings] = Field(default_factory=dict)
    # The organisation of campaigns that name none: one opt-out list for them all.
    default_org: str = "default"
    orgs: dict[str, OrgSettings] = Field(default_factory=dict)
    optouts: OptoutSettings = Field(default_factory=lambda: OptoutSettings())
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
    receipts: ReceiptSettings = Field(default_factory=lambda: ReceiptSettings())
    # The deliverability watch: silent filtering caught per carrier x campaign.
    watch: WatchSettings = Field(default_factory=lambda: WatchSettings())

    admin_token: SecretStr | None = None
    # Each provider's secrets (twilio_auth_token, ...) are fields too, added
    # from the registry with the providers' sections: see _settings_model.

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, v: str) -> str:
        return _region(v)

    @field_validator("default_org")
    @classmethod
    def _default_org(cls, v: str) -> str:
        return _org(v)

    def org_of(self, campaign: str) -> str:
        """The organisation a campaign's opt-outs and replies belong to."""
        c = self.campaigns.get(campaign)
        return (c.org if c is not None else None) or self.default_org

    def campaign(self, name: str) -> CampaignSettings:
        """A campaign's settings; one not configured gets the defaults."""
        return self.campaigns.get(name) or CampaignSettings()

    def regions(self) -> dict[str, str]:
        """Each campaign's region where it sets one."""
        return {name: c.default_region for name, c in self.campaigns.items() if c.default_region}

    def secret(self, field: str) -> SecretStr | None:
        """A secret by its settings name; a registered one that is unset is None."""
        if field not in secret_fields():
            raise KeyError(field)
        value = getattr(self, field, None)
        return value if isinstance(value, SecretStr) else None

    if TYPE_CHECKING:
        # One attribute per registered provider secret (settings.twilio_auth_token).
        def __getattr__(self, name: str) -> SecretStr | None: ...

    @field_validator("routes")
    @classmethod
    def _routes(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        if "default" not in v:
            raise ValueError('needs a "default" route')
        known = provider_names()
        for campaign, route in v.items():
            if not route:
                raise ValueError(f"route {campaign!r} names no provider")
            unknown = [p for p in route if p not in known]
            if unknown:
                raise ValueError(
                    f"route {campaign!r} names unknown provider {unknown[0]!r}; "
                    f"known: {', '.join(known)}"
                )
            if len(set(route)) != len(route):
                raise ValueError(f"route {campaign!r} names a provider twice")
        return v

    @model_validator(mode="after")
    def _limits_name_known_things(self) -> Settings:
        lim = self.limits
        for name in lim.providers:
            if name not in provider_names():
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
    for name in sorted(secret_fields() & data.keys()):
        raise ConfigError(
            f"{path}: {name}: secrets are read only from the environment; "
            f"remove it from the file and set {ENV_PREFIX}{name.upper()}"
        )
    return data


def load_settings(**overrides: Any) -> Settings:
    """Build and validate settings, turning every failure into one ConfigError."""
    try:
        return _settings_model(registry.specs())(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


@lru_cache(maxsize=8)
def _settings_model(specs: tuple[ProviderSpec[Any], ...]) -> type[Settings]:
    """Settings with a ``[providers.NAME]`` section and the secret fields of each
    provider in ``specs``: built from the registry, so settings name no provider.

    Cached per list of specs; a provider registered later gets a model of its own.
    """
    sections: dict[str, Any] = {
        spec.name: (spec.settings, Field(default_factory=spec.settings)) for spec in specs
    }
    secrets: dict[str, Any] = {
        field: (SecretStr | None, None) for spec in specs for field in spec.secrets
    }
    # A provider named like a method, or a secret named like a setting, would hide it.
    for name in sections.keys() & dir(ProvidersSettings):
        raise ValueError(f"provider {name!r}: the name is taken by ProvidersSettings")
    for name in secrets.keys() & (Settings.model_fields.keys() | set(dir(Settings))):
        raise ValueError(f"secret {name!r}: the name is taken by a setting")
    providers = create_model("ProvidersSettings", __base__=ProvidersSettings, **sections)
    return create_model(
        "Settings",
        __base__=Settings,
        providers=(providers, Field(default_factory=providers)),
        **secrets,
    )


def _describe(exc: ValidationError) -> str:
    return describe(exc, str(config_path() or "defaults"), secret_fields())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
