"""A bad setting is named with its key, its variable and the value read, but
never with a credential in it: config errors end up in terminals, CI logs and
issue reports."""

from __future__ import annotations

import pytest

from worker.errors import ConfigError
from worker.settings import load_settings

PASSWORD = "hunter2-0f9e8d7c"
TOKEN = "tok-5ecret-a1b2c3d4"


def config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return str(caught.value)


def test_a_bad_redis_url_is_shown_with_its_password_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = config_error(monkeypatch, SENDQ_REDIS_URL=f"http://:{PASSWORD}@redis.internal:6379/0")
    assert "redis_url (env SENDQ_REDIS_URL): must start with redis://" in message
    assert "'http://:***@redis.internal:6379/0'" in message
    assert PASSWORD not in message


def test_a_password_is_masked_before_a_long_value_is_cut_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Cut first and masked after, the URL would lose its "@" and keep the password.
    url = f"tcp://{'u' * 40}:{PASSWORD * 4}@host:6379/0"
    message = config_error(monkeypatch, SENDQ_REDIS_URL=url)
    assert PASSWORD[:6] not in message


def test_a_password_in_a_url_query_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(
        monkeypatch, SENDQ_PROVIDERS__TWILIO__BASE_URL=f"ftp://api.example?password={PASSWORD}"
    )
    assert "providers.twilio.base_url" in message
    assert PASSWORD not in message


def test_a_token_under_a_key_sendq_does_not_know_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = config_error(monkeypatch, SENDQ_PROVIDERS__TWILIO__AUTH_TOKEN=TOKEN)
    assert "providers.twilio.auth_token" in message
    assert "is not a known setting (got ***)" in message
    assert TOKEN not in message


def test_a_secret_setting_of_the_wrong_type_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(admin_token={"value": TOKEN})
    assert "admin_token (env SENDQ_ADMIN_TOKEN)" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_secret_entries_of_a_bad_section_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, SENDQ_ROUTES=f'{{"default": {{"token": "{TOKEN}"}}}}')
    assert "routes.default" in message
    assert "{'token': '***'}" in message
    assert TOKEN not in message


def test_an_alert_url_is_shown_without_the_path_that_is_its_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = f"https://hooks.slack.com/services/T0/B0/{TOKEN}"
    message = config_error(monkeypatch, SENDQ_ALERTS__URLS=f'"{hook}"')
    assert "alerts.urls" in message
    assert "https://hooks.slack.com/..." in message
    assert TOKEN not in message


def test_a_value_that_holds_no_credential_is_still_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, SENDQ_WORKER__THREADS="sixteen")
    assert "worker.threads (env SENDQ_WORKER__THREADS)" in message
    assert "(got 'sixteen')" in message


def test_an_unknown_region_is_refused_with_its_key() -> None:
    from worker.errors import ConfigError
    from worker.settings import load_settings

    with pytest.raises(ConfigError, match=r"campaigns\.gotv\.default_region.*'ZZ' is not a region"):
        load_settings(campaigns={"gotv": {"default_region": "ZZ"}})
