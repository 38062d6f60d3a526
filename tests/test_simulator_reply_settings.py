"""A scenario's ``[replies]`` and ``[signing]``: the keys, their errors, and the draws.

Pure: no server. The draws are checked statistically over many texts with fixed
seeds (so each run is the same run), and a bad key is refused naming the key.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from statistics import median, quantiles

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from worker.simulator import replies as replies_module
from worker.simulator import signing
from worker.simulator.carriers import number_for
from worker.simulator.replies import (
    DEFAULT_BODIES,
    DEFAULT_KINDS,
    Decision,
    ReplySettings,
    inbound_url,
)
from worker.simulator.scenario import ScenarioError, from_data, load, parse

N = 20_000


def settings(**data: object) -> ReplySettings:
    return from_data({"replies": data}, source="test").replies


def decisions(s: ReplySettings, carrier: str = "att", n: int = N) -> list[Decision | None]:
    return [s.decide(number_for(carrier, i), f"hello {i}", carrier) for i in range(n)]


def within(observed: int, n: int, p: float, sds: float = 4.0) -> bool:
    """``observed`` successes of ``n`` draws at ``p``, within ``sds`` standard deviations."""
    return abs(observed - n * p) <= sds * math.sqrt(n * p * (1 - p)) + 1


def test_the_docstring_example_is_a_valid_scenario() -> None:
    doc = replies_module.__doc__ or ""
    example = doc.split("Example (", 1)[1].split("::\n", 1)[1].split("\nWhat a reply is", 1)[0]
    text = "\n".join(line[4:] for line in example.splitlines())
    loaded = parse(text, source="docstring", fmt="toml").replies
    assert loaded.rate == 0.10 and loaded.carriers == {"verizon": 0.03, "unknown": 0.0}
    assert loaded.bodies["stop"] == ["STOP", "Stop."] and loaded.vonage_method == "GET"


def test_without_a_rate_nobody_replies() -> None:
    s = ReplySettings()
    assert not s.enabled and s.decide("+12125550123", "hi", "att") is None


def test_the_rate_is_honoured_over_many_texts_with_a_seed() -> None:
    s = settings(rate=0.1, seed=7)
    replied = sum(d is not None for d in decisions(s))
    assert within(replied, N, 0.1), replied


def test_the_same_seed_repeats_the_same_replies_and_another_seed_does_not() -> None:
    first = decisions(settings(rate=0.2, seed=7), n=2000)
    again = decisions(settings(rate=0.2, seed=7), n=2000)
    other = decisions(settings(rate=0.2, seed=8), n=2000)
    assert first == again and first != other


def test_a_carriers_own_rate_overrides_the_scenarios() -> None:
    s = settings(rate=0.1, seed=3, carriers={"verizon": 0.5, "att": 0.0})
    assert not any(decisions(s, "att", 5000))
    assert within(sum(d is not None for d in decisions(s, "verizon", 5000)), 5000, 0.5)
    assert within(sum(d is not None for d in decisions(s, "tmobile", 5000)), 5000, 0.1)


def test_a_carrier_rate_alone_turns_replies_on() -> None:
    assert settings(carriers={"tmobile": 0.2}).enabled and not settings(carriers={"att": 0}).enabled


def test_kinds_follow_their_weights_and_kinds_left_out_never_happen() -> None:
    s = settings(rate=1, seed=1, kinds={"ordinary": 3, "stop": 1})
    kinds = Counter(d.kind for d in decisions(s) if d is not None)
    assert set(kinds) == {"ordinary", "stop"}
    assert within(kinds["stop"], N, 0.25)


def test_the_default_mix_has_every_kind_and_says_real_keywords() -> None:
    kinds = Counter(d.kind for d in decisions(settings(rate=1, seed=2)) if d is not None)
    total = sum(DEFAULT_KINDS.values())
    for kind, weight in DEFAULT_KINDS.items():
        assert within(kinds[kind], N, weight / total), (kind, kinds)
    assert {"STOP", "Stop.", " stop ", "UNSUBSCRIBE", "stop all"} <= set(DEFAULT_BODIES["stop"])
    assert {"please stop texting me", "remove me", "wrong number", "stpo"} <= set(
        DEFAULT_BODIES["possible"]
    )
    assert DEFAULT_BODIES["help"][0] == "HELP" and DEFAULT_BODIES["start"][0] == "START"


def test_a_kinds_bodies_can_be_replaced() -> None:
    s = settings(rate=1, kinds={"stop": 1}, bodies={"stop": ["ALTO", "PARAR"]})
    assert {d.body for d in decisions(s, n=500) if d is not None} == {"ALTO", "PARAR"}


def test_a_fixed_delay_is_used_as_given_and_the_default_is_a_humans_lognormal() -> None:
    assert {d.delay_s for d in decisions(settings(rate=1, delay_s=2.5), n=50) if d} == {2.5}
    assert len({d.delay_s for d in decisions(settings(rate=1), n=50) if d}) == 50


def test_a_lognormal_delay_has_the_median_and_p99_it_was_given() -> None:
    s = settings(rate=1, seed=5, delay_median_s=4, delay_p99_s=60)
    delays = [d.delay_s for d in decisions(s) if d is not None]
    assert 3.7 < median(delays) < 4.3
    p99 = quantiles(delays, n=100)[98]
    assert 50 < p99 < 72
    assert min(delays) > 0


def test_the_window_and_body_contains_limit_which_texts_may_get_a_reply() -> None:
    s = settings(rate=1, from_s=10, until_s=20, body_contains="Rally")
    assert not s.eligible("Rally at 5", 9.9) and s.eligible("Rally at 5", 10)
    assert not s.eligible("Rally at 5", 20) and not s.eligible("Vote today", 15)


@pytest.mark.parametrize(
    ("configured", "receipt", "expected"),
    [
        (
            None,
            "http://h:8600/webhooks/twilio/status?mid=1&att=2",
            "http://h:8600/webhooks/twilio/inbound",
        ),
        (None, "https://h/sendq/webhooks/twilio/status", "https://h/sendq/webhooks/twilio/inbound"),
        (None, "http://h:9/receipts", "http://h:9/webhooks/twilio/inbound"),
        (None, None, "http://fallback/webhooks/twilio/inbound"),
        ("http://in:1/base/", "http://h/webhooks/x", "http://in:1/base/webhooks/twilio/inbound"),
        ("http://in:1/{provider}/sms", "http://h/webhooks/x", "http://in:1/twilio/sms"),
    ],
)
def test_the_inbound_url_comes_from_the_scenario_else_the_receipt_urls_base(
    configured: str | None, receipt: str | None, expected: str
) -> None:
    assert inbound_url(configured, receipt, "http://fallback", "twilio") == expected


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    params=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=12)), max_size=6),
    algorithm=st.sampled_from(["HMAC_SHA1", "HMAC_SHA256"]),
)
def test_a_shared_key_signature_equals_the_sdks_for_any_form_and_algorithm(
    params: list[tuple[str, str]], algorithm: str
) -> None:
    class Multi(dict[str, list[str]]):
        def getall(self, name: str) -> list[str]:
            return self[name]

    grouped = Multi()
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    url = "https://hooks.example.com/webhooks/twilio/inbound?x=%20a"
    sdk = RequestValidator("k3y").compute_signature(url, grouped, algorithm=algorithm)
    assert signing.twilio_signature(url, params, "k3y", algorithm) == sdk


def test_a_twilio_shared_key_is_read_from_signing() -> None:
    s = from_data(
        {"signing": {"twilio": {"key_id": "webhooks_sharedkey_1", "secret": "s"}}}, source="x"
    )
    assert s.signing.twilio is not None and s.signing.twilio.algorithm == "HMAC_SHA256"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"replies": {"ratee": 0.1}}, "replies.ratee: unknown key"),
        ({"replies": {"rate": 1.5}}, "replies.rate: Input should be less than or equal to 1"),
        ({"replies": {"kinds": {"stpo": 1}}}, "replies.kinds.stpo: Input should be"),
        ({"replies": {"kinds": {"stop": -1}}}, "replies.kinds: stop: a weight is a number >= 0"),
        ({"replies": {"kinds": {"stop": 0}}}, "at least one kind needs a weight above 0"),
        ({"replies": {"bodies": {"stop": []}}}, "replies.bodies: stop: give at least one body"),
        ({"replies": {"carriers": {"verizn": 0.1}}}, "replies.carriers: unknown carrier 'verizn'"),
        ({"replies": {"carriers": {"att": 2}}}, "replies.carriers: att: a reply rate is between"),
        ({"replies": {"delay_median_s": 4}}, "delay_median_s and delay_p99_s come together"),
        (
            {"replies": {"delay_median_s": 4, "delay_p99_s": 2}},
            "delay_p99_s (2.0) must be at least delay_median_s (4.0)",
        ),
        (
            {"replies": {"delay_s": 1, "delay_median_s": 4, "delay_p99_s": 8}},
            "either delay_s or delay_median_s",
        ),
        ({"replies": {"delay_s": 7200}}, "replies.delay_s: Input should be less than or equal"),
        ({"replies": {"until_s": 5, "from_s": 5}}, "until_s (5.0) must be after from_s (5.0)"),
        ({"replies": {"per": "person"}}, "replies.per: Input should be 'text' or 'handset'"),
        ({"replies": {"inbound_url": "ftp://x"}}, "replies.inbound_url: an http(s) URL"),
        ({"replies": {"vonage_method": "PUT"}}, "replies.vonage_method: Input should be"),
        ({"replies": {"stop_confirmations": [""]}}, "a confirmation body must not be empty"),
        ({"signing": {"twilio": {"key_id": "k"}}}, "signing.twilio.secret: Field required"),
        (
            {"signing": {"twilio": {"key_id": "k", "secret": "s", "algorithm": "MD5"}}},
            "signing.twilio.algorithm: Input should be 'HMAC_SHA1' or 'HMAC_SHA256'",
        ),
        ({"signing": {"plivo": {}}}, "signing.plivo: unknown key"),
    ],
)
def test_a_bad_replies_or_signing_key_is_refused_naming_the_key(data: object, reason: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(reason)):
        from_data(data, source="drill.toml")


def test_a_bad_key_in_a_scenario_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "replies.toml"
    path.write_text("[replies]\nrate = 0.1\n\n[replies.kinds]\nstpo = 1\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=re.escape(f"{path}: invalid scenario")) as caught:
        load(path)
    assert "replies.kinds.stpo" in str(caught.value)
