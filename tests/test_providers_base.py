"""The helpers every provider adapter shares."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from worker.errors import ConfigError
from worker.providers.base import ProviderSettings, Secrets, retry_after_s, secret_env

# Tue, 14 Nov 2023 22:13:20 GMT
NOW_S = 1_700_000_000.0


def answer(retry_after: str | None) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(429, headers=headers)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("120", 120.0), ("0", 0.0), (" 5 ", 5.0), ("1.5", 1.5), ("-3", 0.0)],
)
def test_retry_after_in_delta_seconds(raw: str, seconds: float) -> None:
    assert retry_after_s(answer(raw), now_s=NOW_S) == seconds


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("Tue, 14 Nov 2023 22:14:20 GMT", 60.0),  # IMF-fixdate, the preferred form
        ("Tuesday, 14-Nov-23 22:13:50 GMT", 30.0),  # obsolete RFC 850 form
        ("Tue Nov 14 22:13:30 2023", 10.0),  # obsolete asctime form
    ],
)
def test_retry_after_as_an_http_date_is_the_wait_until_then(raw: str, seconds: float) -> None:
    assert retry_after_s(answer(raw), now_s=NOW_S) == seconds


def test_retry_after_as_a_date_in_the_past_means_now() -> None:
    assert retry_after_s(answer("Wed, 21 Oct 2015 07:28:00 GMT"), now_s=NOW_S) == 0.0


@pytest.mark.parametrize(
    "raw", ["soon", "", "inf", "nan", "Mon, 32 Foo 2023 99:99:99 GMT", "12 apples"]
)
def test_an_unusable_retry_after_is_none(raw: str) -> None:
    assert retry_after_s(answer(raw), now_s=NOW_S) is None


def test_no_retry_after_is_none() -> None:
    assert retry_after_s(answer(None)) is None


def test_an_http_date_is_measured_against_the_real_clock_by_default() -> None:
    far = retry_after_s(answer("Fri, 01 Jan 2100 00:00:00 GMT"))
    assert far is not None and far > 0


# -- what a provider module declares ---------------------------------------------------


class Example(ProviderSettings):
    base_url: str = "https://api.example.com/"


def test_a_providers_settings_normalise_its_numbers_and_base_url() -> None:
    section = Example.model_validate({"numbers": ["+1 (201) 555-0123"]})
    assert section.numbers == ["+12015550123"]
    assert Example.model_validate({"base_url": "http://127.0.0.1:8700/"}).base_url == (
        "http://127.0.0.1:8700"
    )


@pytest.mark.parametrize(
    ("section", "reason"),
    [
        ({"numbers": []}, "the sending-number pool is empty"),
        ({"numbers": ["12"]}, "sending number"),
        ({"base_url": "ftp://api.example.com"}, "must start with http:// or https://"),
        ({"timeout_s": 0}, "greater than 0"),
        ({"bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_provider_setting_is_refused_with_its_reason(
    section: dict[str, object], reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        Example.model_validate(section)


def test_a_required_secret_that_is_unset_or_empty_names_its_environment_variable() -> None:
    secrets = Secrets("example", {"example_token": None, "example_key": SecretStr("")})
    for field in ("example_token", "example_key", "example_other"):
        with pytest.raises(ConfigError) as caught:
            secrets.require(field)
        assert str(caught.value) == (
            f"providers.example: no credentials; set SENDQ_{field.upper()} in the environment"
        )
        assert secrets.get(field) == ""


def test_a_set_secret_is_its_value() -> None:
    secrets = Secrets("example", {"example_token": SecretStr("s3cret")})
    assert secrets.require("example_token") == secrets.get("example_token") == "s3cret"
    assert secret_env("example_token") == "SENDQ_EXAMPLE_TOKEN"
