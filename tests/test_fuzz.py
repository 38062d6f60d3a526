"""Bad input, generated: every rejection names its reason, nothing crashes, nothing else changes.

SENDQ_FUZZ_EXAMPLES sets the cases per input: 10,000 by default, which CI runs (about two
minutes); set it lower for a quick local run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.testclient import TestClient

from worker.enqueue import Producer
from worker.errors import ConfigError
from worker.models import SendJob, describe_validation_error
from worker.providers.bandwidth import BandwidthProvider
from worker.providers.plivo import PlivoProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider
from worker.providers.vonage import VonageProvider
from worker.settings import load_settings
from worker.simulator.config import telnyx_public_key
from worker.store import AsyncStore, Store
from worker.webhooks import create_app

EXAMPLES = int(os.environ.get("SENDQ_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FIELDS = ["to", "body", "campaign", "key", "send_before", "metadata", "colour"]

any_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=400)
values = st.one_of(
    any_text,
    st.integers(),
    st.floats(allow_nan=True),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from(["+12015550123", "2015550123", "+1 (201) 555-0123", "x" * 2000, "€" * 900]),
)
jobs = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6)


@FUZZ
@given(job=jobs)
def test_any_job_is_accepted_valid_or_rejected_with_named_fields(job: dict[str, Any]) -> None:
    try:
        valid = SendJob.model_validate(job)
    except ValidationError as exc:
        reason = describe_validation_error(exc)
        assert all(f"{err['loc'][0]}: " in reason for err in exc.errors())
        return
    assert valid.to.startswith("+") and valid.to[1:].isdigit()
    assert 1 <= valid.segments <= 10 and valid.body.strip()


@settings(
    max_examples=min(EXAMPLES, 300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(jobs, max_size=8))
def test_bad_jobs_never_disturb_what_is_already_queued(client, ns, queue, batch) -> None:
    producer = Producer(client, ns=ns, queue=queue)
    producer.enqueue({"to": "+12015550123", "body": "already here", "campaign": "keep"})
    before = Store(client, ns).stats()["keep"]
    report = producer.enqueue_many([*batch, {"to": "+12015550124", "body": "good"}])
    assert len(report.accepted) + len(report.rejected) == len(batch) + 1
    assert report.accepted[-1].index == len(batch)
    assert all(r.reason for r in report.rejected)
    assert Store(client, ns).stats()["keep"] == before


toml_values = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.text(alphabet=st.characters(codec="ascii", exclude_characters='"\\\n'), max_size=20).map(
        lambda s: f'"{s}"'
    ),
    st.sampled_from(
        ["true", "[]", '["+12015550100"]', "1.5", '"redis://x"', "{", "=", '"\\u0000"']
    ),
)
toml_keys = st.sampled_from(
    [
        "redis_url",
        "data_dir",
        "log_level",
        "threads",
        "processes",
        "numbers",
        "base_url",
        "default",
        "bogus",
        "twilio_auth_token",
        "rate",
    ]
)
toml_sections = st.sampled_from(
    [
        "",
        "[worker]",
        "[webhooks]",
        "[providers.twilio]",
        "[routes]",
        "[limits]",
        "[breakers.carrier]",
        "[nonsense]",
        "[worker",
    ]
)


@FUZZ
@given(doc=st.lists(st.tuples(toml_sections, toml_keys, toml_values), max_size=6))
def test_any_config_file_loads_or_names_the_problem(
    tmp_path: Path, doc: list[tuple[str, str, str]]
) -> None:
    path = tmp_path / "sendq.toml"
    path.write_text("\n".join(f"{section}\n{key} = {value}" for section, key, value in doc))
    old = os.environ.get("SENDQ_CONFIG")
    os.environ["SENDQ_CONFIG"] = str(path)
    try:
        load_settings()
    except ConfigError as exc:
        assert str(path) in str(exc)
    finally:
        if old is None:
            os.environ.pop("SENDQ_CONFIG", None)
        else:
            os.environ["SENDQ_CONFIG"] = old


@pytest.fixture(scope="module")
def hooks(redis_url: str) -> Iterator[TestClient]:
    providers = {
        "twilio": TwilioProvider(
            account_sid="AC" + "7" * 32, auth_token="t", base_url="http://127.0.0.1:9"
        ),
        "bandwidth": BandwidthProvider(
            account_id="1",
            application_id="a",
            username="u",
            password="p",
            callback_username="cb",
            callback_password="cbp",
        ),
        "plivo": PlivoProvider(auth_id="MA" + "0" * 18, auth_token="t"),
        "telnyx": TelnyxProvider(api_key="KEYfuzz", public_key=telnyx_public_key()),
        "vonage": VonageProvider(api_key="k", api_secret="s", signature_secret="sig"),
    }
    app = create_app(
        store=AsyncStore(aioredis.Redis.from_url(redis_url), "fuzz"),
        providers=providers,
        public_url="http://testserver",
    )
    with TestClient(app) as client:
        yield client


content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/json",
        "text/plain",
        "",
        "multipart/form-data; boundary=x",
        "\x00",
    ]
)


@FUZZ
@given(
    provider=st.sampled_from(["twilio", "bandwidth", "plivo", "telnyx", "vonage", "nope"]),
    body=st.binary(max_size=2000),
    content_type=content_types,
    headers=st.dictionaries(
        st.sampled_from(
            [
                "x-twilio-signature",
                "authorization",
                "x-plivo-signature-v3",
                "x-plivo-signature-v3-nonce",
                "telnyx-signature-ed25519",
                "telnyx-timestamp",
            ]
        ),
        st.text(alphabet=st.characters(codec="latin-1"), max_size=60),
        max_size=3,
    ),
)
def test_garbage_at_any_webhook_gets_a_4xx_never_a_500(
    hooks, provider, body, content_type, headers
) -> None:
    sent = {k: v.encode("latin-1") for k, v in headers.items()}
    if content_type:
        sent["content-type"] = content_type.encode("latin-1")
    response = hooks.post(f"/webhooks/{provider}/status?mid=x", content=body, headers=sent)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]
