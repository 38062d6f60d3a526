"""Bad input, generated: every rejection names its reason, nothing crashes, nothing else changes.

SENDQ_FUZZ_EXAMPLES sets the cases per input: 10,000 by default (CI runs 3,000); set it
lower for a quick local run. The real enqueue path is fuzzed in tests/test_fuzz_enqueue.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.applications import Starlette

from tests import parts
from worker import keys
from worker.enqueue import Producer
from worker.errors import ConfigError
from worker.models import SendJob, describe_validation_error
from worker.providers import registry, transport
from worker.providers import twilio as twilio_mod
from worker.providers import vonage as vonage_mod
from worker.providers.bandwidth import BandwidthProvider
from worker.providers.plivo import PlivoProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider
from worker.providers.vonage import VonageProvider
from worker.settings import SECRET_FIELDS, load_settings
from worker.simulator.config import telnyx_public_key
from worker.store import AsyncStore, Store
from worker.webhooks import DEFAULT_MAX_BODY_BYTES, create_app

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


SECRET_ENVS = sorted(f"SENDQ_{name.upper()}" for name in SECRET_FIELDS)
# A secret with a format of its own gets a well-formed value here; its format
# errors are tested beside its parser (tests/test_twilio_shared_key.py).
FORMATTED_SECRETS = {"SENDQ_TWILIO_WEBHOOK_KEYS": "fuzz_key=secret-fuzz"}
providers_routed = st.lists(
    st.sampled_from(["twilio", "telnyx", "bandwidth", "plivo", "vonage", "console"]),
    min_size=1,
    max_size=3,
    unique=True,
)
PROVIDER_ENV = {
    "SENDQ_PROVIDERS__BANDWIDTH__CLIENT_ID": ["client-1", ""],
    "SENDQ_PROVIDERS__VONAGE__SIGN_REQUESTS": ["true", "false"],
    "SENDQ_PROVIDERS__TELNYX__PUBLIC_KEY": [telnyx_public_key(), " "],
}
provider_env = st.fixed_dictionaries(
    {}, optional={name: st.sampled_from(choices) for name, choices in PROVIDER_ENV.items()}
)


@pytest.fixture
def cheap_http_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Providers built from config share one transport: what is tested is the credential
    check before it, and a real transport per provider per case triples the time."""
    shared = httpx.MockTransport(lambda request: httpx.Response(599))
    monkeypatch.setattr(transport, "_fast_transport", lambda limits: shared)


def _secret_named_absent(message: str, present: set[str]) -> bool:
    """A ConfigError for a missing credential names an env var that is indeed unset."""
    named = [env for env in SECRET_ENVS if env in message]
    if "providers.telnyx.public_key" in message:
        return True
    return bool(named) and all(env not in present for env in named)


@FUZZ
@given(
    doc=st.just([]) | st.lists(st.tuples(toml_sections, toml_keys, toml_values), max_size=6),
    routes=st.none() | st.dictionaries(st.sampled_from(["default", "gotv"]), providers_routed),
    present=st.sets(st.sampled_from(SECRET_ENVS)),
    extra_env=provider_env,
)
def test_any_config_file_loads_or_names_the_problem_and_a_missing_secret_names_its_env_var(
    cheap_http_clients: None,
    tmp_path: Path,
    doc: list[tuple[str, str, str]],
    routes: dict[str, list[str]] | None,
    present: set[str],
    extra_env: dict[str, str],
) -> None:
    path = tmp_path / "sendq.toml"
    path.write_text("\n".join(f"{section}\n{key} = {value}" for section, key, value in doc))
    env = {"SENDQ_CONFIG": str(path), **extra_env}
    env.update({name: FORMATTED_SECRETS.get(name, f"secret-{name.lower()}") for name in present})
    if routes is not None:
        env["SENDQ_ROUTES"] = json.dumps(routes)
    touched = {*env, *SECRET_ENVS, "SENDQ_ROUTES", *PROVIDER_ENV}
    saved = {name: os.environ.pop(name, None) for name in touched}
    os.environ.update(env)
    try:
        try:
            settings_ = load_settings()
        except ConfigError as exc:
            assert str(path) in str(exc)
            return
        try:
            registry.build_all(settings_)
        except ConfigError as exc:
            event("a routed provider's credential or key is missing")
            assert _secret_named_absent(str(exc), present), str(exc)
            return
        needed = {f"SENDQ_{p.upper()}_" for p in settings_.routed_providers() if p != "console"}
        assert all(any(env.startswith(prefix) for env in present) for prefix in needed)
    finally:
        for name in touched:
            os.environ.pop(name, None)
            if saved[name] is not None:
                os.environ[name] = saved[name]  # type: ignore[assignment]


class InProcess:
    """The webhook app driven in this thread on one event loop, through httpx's ASGI
    transport: about four times faster per request than TestClient's portal thread."""

    def __init__(self, app: Starlette, base_url: str = "http://testserver") -> None:
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, url, **kw))

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def close(self, *resources: Any) -> None:
        async def close_all() -> None:
            await self.client.aclose()
            for resource in resources:
                await resource.aclose()

        self.loop.run_until_complete(close_all())
        self.loop.close()


@pytest.fixture(scope="module")
def hooks(redis_url: str) -> Iterator[InProcess]:
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
    store = aioredis.Redis.from_url(redis_url)
    app = create_app(
        store=AsyncStore(store, "fuzz"),
        providers=providers,
        public_url="http://testserver",
        feed=parts.feed(store, "fuzz"),
    )
    client = InProcess(app)
    yield client
    client.close(store, *providers.values())


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


# -- validly signed garbage: the receipt parsers see it -------------------------------------

SIGNED_PUBLIC = "http://testserver"
TWILIO_TOKEN = "fuzz-twilio-token"
VONAGE_SECRET = "fuzz-vonage-signature-secret"
TELNYX_KEY = Ed25519PrivateKey.generate()
garbage_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
statuses = st.sampled_from(
    ["delivered", "undelivered", "failed", "sent", "queued", "accepted", "DELIVERED", ""]
)
receipt_values = st.one_of(garbage_text, statuses, st.sampled_from(["30007", "0", "-1", "1e9"]))
# A message id no text has: receipts for it reach the store and change nothing.
mids = st.one_of(st.just(""), st.text(alphabet="0123456789abcdef", min_size=1, max_size=22))
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), garbage_text, statuses
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(garbage_text, inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def signed_hooks(redis_url: str) -> Iterator[tuple[InProcess, redis.Redis, str, bytes]]:
    """Twilio, Telnyx and Vonage with known secrets, and a text already sending."""
    ns = f"fz{secrets.token_hex(4)}"
    raw_key = TELNYX_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    providers = {
        "twilio": TwilioProvider(
            account_sid="AC" + "7" * 32, auth_token=TWILIO_TOKEN, base_url="http://127.0.0.1:9"
        ),
        "telnyx": TelnyxProvider(api_key="KEYfuzz", public_key=base64.b64encode(raw_key).decode()),
        "vonage": VonageProvider(api_key="k", api_secret="s", signature_secret=VONAGE_SECRET),
    }
    sync = redis.Redis.from_url(redis_url)
    kept = Producer(sync, ns=ns, queue=f"q{ns}").enqueue({"to": "+12015550123", "body": "kept"})
    Store(sync, ns).transition(kept.message_id, ["queued"], "sending", reason="test")
    store = aioredis.Redis.from_url(redis_url)
    app = create_app(
        store=AsyncStore(store, ns),
        providers=providers,
        public_url=SIGNED_PUBLIC,
        feed=parts.feed(store, ns),
    )
    client = InProcess(app, SIGNED_PUBLIC)
    kept_key = keys.message(kept.message_id, ns)
    yield client, sync, kept_key, sync.dump(kept_key)
    client.close(store, *providers.values())
    sync.close()


def _twilio_request(mid: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    path = f"/webhooks/twilio/status?{urlencode({'mid': mid})}"
    sig = twilio_mod.signature(SIGNED_PUBLIC + path, params, TWILIO_TOKEN)
    headers = {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": sig}
    return {"method": "POST", "url": path, "content": urlencode(params), "headers": headers}


def _telnyx_request(mid: str, body: bytes) -> dict[str, Any]:
    ts = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        "telnyx-timestamp": ts,
        "telnyx-signature-ed25519": base64.b64encode(
            TELNYX_KEY.sign(f"{ts}|".encode() + body)
        ).decode(),
    }
    path = f"/webhooks/telnyx/status?{urlencode({'mid': mid})}"
    return {"method": "POST", "url": path, "content": body, "headers": headers}


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _vonage_get(mid: str, params: dict[str, str]) -> dict[str, Any]:
    params = {**params, "mid": mid, "timestamp": str(int(time.time()))}
    params["sig"] = vonage_mod.signature(params, VONAGE_SECRET)
    return {"method": "GET", "url": f"/webhooks/vonage/status?{urlencode(params)}"}


TWILIO_FIELDS = ["MessageSid", "MessageStatus", "ErrorCode", "AccountSid", "To", "From"]
VONAGE_FIELDS = ["messageId", "status", "err-code", "msisdn", "client-ref", "network-code"]


def _params(known: list[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Each of the provider's own fields or not, with any value, then garbage pairs."""
    return st.tuples(
        st.fixed_dictionaries({}, optional=dict.fromkeys(known, receipt_values)),
        st.lists(st.tuples(garbage_text, receipt_values), max_size=3),
    ).map(lambda pair: [*pair[0].items(), *pair[1]])


twilio_params = _params(TWILIO_FIELDS)
telnyx_bodies = st.one_of(
    st.binary(max_size=60),
    garbage_text.map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "data": st.fixed_dictionaries(
                {},
                optional={
                    "event_type": st.sampled_from(["message.finalized", "message.sent"])
                    | garbage_text,
                    "record_type": st.just("event") | json_leaf,
                    "payload": st.fixed_dictionaries(
                        {},
                        optional={
                            "id": json_leaf,
                            "to": st.lists(
                                st.fixed_dictionaries(
                                    {},
                                    optional={
                                        "phone_number": json_leaf,
                                        "status": statuses | json_leaf,
                                        "carrier": json_leaf,
                                    },
                                ),
                                max_size=2,
                            )
                            | json_values,
                            "errors": st.lists(
                                st.fixed_dictionaries(
                                    {},
                                    optional={
                                        "code": receipt_values | json_leaf,
                                        "title": json_leaf,
                                    },
                                ),
                                max_size=2,
                            )
                            | json_values,
                            "webhook_url": st.one_of(
                                json_leaf,
                                mids.map(
                                    lambda m: f"{SIGNED_PUBLIC}/webhooks/telnyx/status?mid={m}"
                                ),
                            ),
                        },
                    )
                    | json_values,
                },
            )
            | json_values
        }
    ).map(lambda v: json.dumps(v).encode()),
)
vonage_params = _params(VONAGE_FIELDS).map(
    lambda pairs: {k: v for k, v in pairs if k not in ("mid", "timestamp", "sig")}
)


SIGNED = {
    "twilio": st.tuples(mids, twilio_params).map(lambda a: _twilio_request(*a)),
    "telnyx": st.tuples(mids, telnyx_bodies).map(lambda a: _telnyx_request(*a)),
    "vonage GET": st.tuples(mids, vonage_params).map(lambda a: _vonage_get(*a)),
}


# SENDQ_FUZZ_EXAMPLES cases in all, a third to each provider: a request takes ~1 ms
# more than a generated job, and the unsigned fuzz above already covers every route.
@settings(FUZZ, max_examples=max(1, -(-EXAMPLES // len(SIGNED))))
@given(data=st.data())
@pytest.mark.parametrize("provider", sorted(SIGNED))
def test_a_validly_signed_garbage_receipt_gets_a_4xx_naming_its_reason_and_changes_nothing(
    signed_hooks, provider: str, data: st.DataObject
) -> None:
    hooks, sync, kept_key, kept_before = signed_hooks
    request = data.draw(SIGNED[provider], label="request")
    response = hooks.request(**request)
    assert response.status_code < 500, response.text
    if response.status_code == 403:
        # Telnyx signs text: a body that is not UTF-8 cannot be one of its receipts.
        assert provider == "telnyx" and not _utf8(request["content"]), response.text
    answer = response.json()
    event(f"{provider}: {response.status_code}")
    if response.status_code >= 400:
        assert isinstance(answer["error"], str) and answer["error"], answer
    else:
        results = answer.get("receipts", [answer])
        assert all(r.get("applied") is not True for r in results), answer
    assert sync.dump(kept_key) == kept_before


@pytest.mark.parametrize("provider", ["twilio", "bandwidth", "plivo", "telnyx", "vonage"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_a_body_over_the_limit_gets_413_naming_the_limit(hooks, provider, declared) -> None:
    huge = b"a=" + b"x" * DEFAULT_MAX_BODY_BYTES

    async def streamed() -> AsyncIterator[bytes]:
        yield huge[:1000]
        yield huge[1000:]

    content: Any = huge if declared else streamed()
    response = hooks.post(
        f"/webhooks/{provider}/status?mid=x",
        content=content,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == f"body larger than {DEFAULT_MAX_BODY_BYTES} bytes"


def test_a_validly_signed_body_over_the_limit_is_still_413(signed_hooks) -> None:
    hooks, sync, kept_key, kept_before = signed_hooks
    body = json.dumps({"data": {"pad": "x" * DEFAULT_MAX_BODY_BYTES}}).encode()
    response = hooks.request(**_telnyx_request("abc", body))
    assert response.status_code == 413 and "body larger than" in response.json()["error"]
    assert sync.dump(kept_key) == kept_before


def test_the_signed_fuzz_signs_as_each_provider_checks(signed_hooks) -> None:
    """Without this, the fuzz above could be testing 403s: one good receipt per provider."""
    hooks, *_ = signed_hooks
    twilio = [("MessageSid", "SM1"), ("MessageStatus", "delivered")]
    telnyx = json.dumps(
        {
            "data": {
                "event_type": "message.finalized",
                "payload": {
                    "id": "x",
                    "to": [{"phone_number": "+12015550123", "status": "delivered"}],
                    # Telnyx signs the body: sendq's id travels in the URL it echoes.
                    "webhook_url": f"{SIGNED_PUBLIC}/webhooks/telnyx/status?mid=feed&att=1",
                },
            }
        }
    ).encode()
    for request in (
        _twilio_request("feed", twilio),
        _telnyx_request("feed", telnyx),
        _vonage_get("feed", {"messageId": "v1", "status": "delivered"}),
    ):
        response = hooks.request(**request)
        assert response.status_code == 200, response.text
        assert response.json() == {"applied": False, "reason": "unknown message"}
