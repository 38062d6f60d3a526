"""Scenario files: the per-provider keys (provider, error, refuse, [providers.X]) and
the ``sendq simulator`` options that come with them."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from worker.cli import app
from worker.simulator import scenario as scenario_module
from worker.simulator.config import telnyx_public_key
from worker.simulator.scenario import Rule, Scenario, ScenarioError, from_data, parse


def test_the_docstring_example_is_a_valid_scenario() -> None:
    doc = scenario_module.__doc__ or ""
    example = doc.split("Example::", 1)[1].split("\nA rule matches", 1)[0]
    text = "\n".join(line[4:] for line in example.splitlines())
    loaded = parse(text, source="docstring", fmt="toml")
    assert loaded.limits("telnyx") == (50, 1) and loaded.limits("twilio") == (500, 50)
    assert [r.refuse for r in loaded.rules] == [False, False, True, False, False, False]
    assert [r.drop for r in loaded.rules][-2:] == ["reset", None]


def test_a_providers_own_limit_falls_back_to_the_scenarios() -> None:
    s = from_data({"account_mps": 5, "providers": {"vonage": {"number_mps": 2}}}, source="x")
    assert (s.limits("vonage"), s.limits("plivo")) == ((5, 2), (5, None))


def test_a_rule_scoped_to_a_provider_spares_the_others() -> None:
    s = Scenario(rules=(Rule(provider="telnyx", error="carrier_block"),))
    assert s.fate(0.0, "att", "+12125550123", "hi", "telnyx") is not None
    assert s.fate(0.0, "att", "+12125550123", "hi", "twilio") is None


def test_literal_error_codes_still_load_and_take_any_providers_length() -> None:
    s = from_data({"rules": [{"error_code": "30007"}, {"error_code": "30"}]}, source="x")
    assert [r.error_code for r in s.rules] == ["30007", "30"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"rules": [{"refuse": True, "carrier": "att"}]}, "a refuse rule takes only"),
        ({"rules": [{"refuse": True, "http_status": 503}]}, "a refuse rule takes only"),
        ({"rules": [{"error": "carrier_block", "error_code": "1"}]}, "not both"),
        ({"rules": [{"provider": "sinch", "http_status": 503}]}, "unknown provider 'sinch'"),
        ({"rules": [{"error": "spam"}]}, "unknown error category 'spam'"),
        ({"providers": {"telnyx": {"mps": 3}}}, "unknown key"),
        ({"providers": {"telnyx": {"account_mps": 0}}}, "greater than or equal to 1"),
        ({"rules": [{"mode": "sync", "dlr_delay_s": 1}]}, 'mode = "sync" needs an error'),
    ],
)
def test_a_bad_rule_is_refused_with_its_key_and_reason(data: object, reason: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(reason)):
        from_data(data, source="drill.toml")


def test_an_unknown_provider_table_is_refused() -> None:
    with pytest.raises(ScenarioError, match=re.escape("providers.sinch: unknown provider 'sinch'")):
        from_data({"providers": {"sinch": {"account_mps": 1}}}, source="drill.toml")


def test_the_cli_prints_the_telnyx_public_key() -> None:
    result = CliRunner().invoke(app, ["simulator", "--telnyx-public-key"])
    assert result.exit_code == 0 and result.output.strip() == telnyx_public_key()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--provider-port", "sinch=8701"], "unknown provider 'sinch'"),
        (["--provider-port", "telnyx"], "expected PROVIDER=VALUE"),
        (["--provider-port", "telnyx=http"], "not a port number"),
        (["--callback-url", "twilio=http://x"], "unknown provider 'twilio'"),
        (["--callback-url", "bandwidth=ftp://x"], "must start with http"),
    ],
)
def test_bad_simulator_options_stop_start_up_with_a_reason(args: list[str], reason: str) -> None:
    result = CliRunner().invoke(app, ["simulator", "--port", "0", *args])
    assert result.exit_code == 1 and reason in result.output
