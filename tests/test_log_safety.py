"""Logs carry no full phone number and no secret, across a run that exercises every path.

Events are captured after the processors ``logs.configure`` installs (``logs.processors()``),
so what is checked is what would be rendered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from typer.testing import CliRunner

from tests.conftest import AUTH_TOKEN
from tests.parts import feed
from tests.parts import pipeline as build_pipeline
from worker import keys
from worker import logs as logs_module
from worker.alerts import Alerter
from worker.breaker import AsyncBreakers, Breakers, Policy
from worker.carriers import CarrierResolver
from worker.enqueue import Producer
from worker.logs import mask_text, safe_url
from worker.providers.bandwidth import BandwidthProvider
from worker.providers.base import Provider
from worker.providers.plivo import PlivoProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider, signature
from worker.providers.vonage import VonageProvider
from worker.retry import Backoff
from worker.sendpath import PipelineConfig
from worker.simulator.carriers import number_for
from worker.simulator.config import SimulatorConfig, telnyx_public_key
from worker.store import AsyncStore
from worker.webhooks import create_app

SID = "AC" + "5" * 32
SLACK = "https://hooks.slack.example/services/T000/B000/s3cr3tPathToken"


async def no_sleep(_: float) -> None:
    return None


async def test_a_full_run_logs_no_numbers_and_no_secrets(sim, aclient, client, ns, queue) -> None:
    numbers = [number_for(c, i) for i, c in enumerate(["att", "verizon", "tmobile"] * 4)]
    dead = "http://127.0.0.1:9"
    providers = {
        "primary": TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=dead),
        "twilio": TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim),
    }
    alerter = Alerter([SLACK], attempts=1)
    pipeline = build_pipeline(
        PipelineConfig(
            queue=queue,
            public_url="http://127.0.0.1:9",
            routes={"default": ["primary", "twilio"]},
            numbers={"primary": ["+12015550100"], "twilio": ["+12015550101"]},
            max_attempts=2,
            backoff=Backoff(1000, 10_000),
        ),
        aclient,
        ns,
        providers,
        AsyncBreakers(aclient, "provider", Policy(consecutive=2), ns, cache_ms=0),
        carriers=CarrierResolver(aclient, ns=ns, lookup=httpx.AsyncClient(base_url=dead)),
        carrier_breakers=AsyncBreakers(aclient, "carrier", Policy(consecutive=2), ns, cache_ms=0),
        alerter=alerter,
        sleep=no_sleep,
    )
    httpx.post(f"{sim}/sim/scenario", json={"rules": [{"error_code": "21211", "mode": "sync"}]})
    producer = Producer(client, ns=ns, queue=queue)
    ids = [
        a.message_id
        for a in producer.enqueue_many(
            {"to": n, "body": f"hello {n}", "campaign": "gotv"} for n in numbers
        ).accepted
    ]
    Breakers(client, "carrier", Policy(), ns).pause("unknown:gotv", who="maria", reason="test")
    with capture_logs(processors=logs_module.processors()) as logs:
        for msg_id in ids:
            await pipeline.deliver(msg_id)
        Breakers(client, "carrier", Policy(), ns).resume("unknown:gotv", who="maria")
        httpx.post(f"{sim}/sim/scenario", json={"rules": [{"http_status": 500}]})
        for msg_id in ids:
            await pipeline.deliver(msg_id)
        await alerter.drain()
    await asyncio.gather(*(p.aclose() for p in providers.values()))
    assert len(logs) > 5
    text = repr(logs)
    for n in numbers:
        assert n not in text and n[2:] not in text, n
    assert AUTH_TOKEN not in text
    assert "s3cr3tPathToken" not in text


def test_masking_helpers_hide_numbers_urls_and_redis_passwords() -> None:
    assert mask_text("to +12015550123 failed") == "to *******0123 failed"
    assert mask_text("redis://:hunter2@host:6379/0") == "redis://:***@host:6379/0"
    assert safe_url(SLACK) == "https://hooks.slack.example/..."


def test_the_configured_renderer_scrubs_whatever_is_bound(capsys) -> None:
    from worker.logs import scrub_processor

    event = scrub_processor(
        None,
        "info",
        {
            "event": "x",
            "to": "+12015550123",
            "auth_token": "abc",
            "nested": {"password": "p", "n": "2015550123"},
        },
    )
    assert event == {
        "event": "x",
        "to": "*******0123",
        "auth_token": "***",
        "nested": {"password": "***", "n": "******0123"},
    }
    structlog.reset_defaults()


# Distinctive credentials, so any leak is found by a plain substring search.
SECRETS = {
    "telnyx_api_key": "KEYleak-telnyx-0001",
    "bandwidth_password": "leak-bandwidth-password-0002",
    "bandwidth_client_secret": "leak-bandwidth-client-secret-0003",
    "bandwidth_callback_password": "leak-bandwidth-callback-0004",
    "plivo_auth_token": "leak-plivo-auth-token-0005",
    "vonage_api_secret": "leak-vonage-api-secret-0006",
    "vonage_signature_secret": "leak-vonage-signature-0007",
    "hook_token": "leak-twilio-receipt-token-0008",
}
PUBLIC = "https://hooks.example.org"
TELNYX_KEY = Ed25519PrivateKey.generate()


def _every_secret(sim_cfg: SimulatorConfig) -> list[str]:
    real = [
        AUTH_TOKEN,
        sim_cfg.bandwidth_client_secret,
        sim_cfg.bandwidth_callback_password,
        sim_cfg.telnyx_api_key,
    ]
    basic = base64.b64encode(
        f"{sim_cfg.bandwidth_client_id}:{sim_cfg.bandwidth_client_secret}".encode()
    ).decode()
    return [*SECRETS.values(), *real, basic]


def _secret_adapters(sim: str, sim_cfg: SimulatorConfig) -> dict[str, Provider]:
    """Every provider with a credential the simulator refuses, and Bandwidth OAuth2 twice:
    once refused at the token endpoint, once with a token it issues (a Bearer header)."""
    token_url = f"{sim}/api/v1/oauth2/token"
    return {
        "telnyx": TelnyxProvider(
            api_key=SECRETS["telnyx_api_key"], public_key=telnyx_public_key(), base_url=sim
        ),
        "bandwidth_basic": BandwidthProvider(
            account_id="9900000",
            application_id="a1",
            username="u",
            password=SECRETS["bandwidth_password"],
            callback_username="cb",
            callback_password=SECRETS["bandwidth_callback_password"],
            base_url=sim,
        ),
        "bandwidth_oauth": BandwidthProvider(
            account_id="9900000",
            application_id="a1",
            client_id=sim_cfg.bandwidth_client_id,
            client_secret=SECRETS["bandwidth_client_secret"],
            token_url=token_url,
            callback_username="cb",
            callback_password=SECRETS["bandwidth_callback_password"],
            base_url=sim,
        ),
        "plivo": PlivoProvider(
            auth_id="MA" + "7" * 18, auth_token=SECRETS["plivo_auth_token"], base_url=sim
        ),
        "vonage": VonageProvider(
            api_key="a1b2c3d4",
            api_secret=SECRETS["vonage_api_secret"],
            signature_secret=SECRETS["vonage_signature_secret"],
            base_url=sim,
        ),
        "bandwidth_ok": BandwidthProvider(
            account_id="9900000",
            application_id="a1",
            client_id=sim_cfg.bandwidth_client_id,
            client_secret=sim_cfg.bandwidth_client_secret,
            token_url=token_url,
            callback_username=sim_cfg.bandwidth_callback_username,
            callback_password=sim_cfg.bandwidth_callback_password,
            base_url=sim,
        ),
        "twilio": TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim),
    }


def _signed_twilio(path: str, params: dict[str, str], token: str) -> dict[str, str]:
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": signature(PUBLIC + path, params.items(), token),
    }


def _telnyx_headers(body: bytes, key: Ed25519PrivateKey) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "content-type": "application/json",
        "telnyx-timestamp": ts,
        "telnyx-signature-ed25519": base64.b64encode(key.sign(f"{ts}|".encode() + body)).decode(),
    }


def _exercise_the_webhook_app(redis_url: str, ns: str, msg_ids: list[str], to: str) -> None:
    raw = TELNYX_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    aclient = aioredis.Redis.from_url(redis_url)
    app = create_app(
        store=AsyncStore(aclient, ns),
        providers={
            "twilio": TwilioProvider(
                account_sid=SID, auth_token=SECRETS["hook_token"], base_url="http://127.0.0.1:9"
            ),
            "telnyx": TelnyxProvider(
                api_key=SECRETS["telnyx_api_key"], public_key=base64.b64encode(raw).decode()
            ),
        },
        public_url=PUBLIC,
        feed=feed(aclient, ns),
    )
    with TestClient(app, base_url=PUBLIC) as hooks:
        for msg_id in msg_ids:
            path = f"/webhooks/twilio/status?mid={msg_id}"
            params = {
                "MessageSid": "SM" + "a" * 32,
                "MessageStatus": "undelivered",
                "ErrorCode": "30007",
                "To": to,
            }
            signed = hooks.post(
                path, data=params, headers=_signed_twilio(path, params, SECRETS["hook_token"])
            )
            # Applied, or refused as naming no attempt of this text (the texts went
            # out through Bandwidth): either way the app logs it, and that is checked.
            assert signed.status_code < 500, signed.text
            forged = hooks.post(path, data=params, headers=_signed_twilio(path, params, "forged"))
            assert forged.status_code == 403
            body = json.dumps(
                {
                    "data": {
                        "event_type": "message.finalized",
                        "payload": {"to": [{"phone_number": to}]},
                    }
                }
            ).encode()
            forged_telnyx = hooks.post(
                f"/webhooks/telnyx/status?mid={msg_id}",
                content=body,
                headers=_telnyx_headers(body, Ed25519PrivateKey.generate()),
            )
            assert forged_telnyx.status_code == 403


def _exercise_the_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, producer: Producer, to: str
) -> None:
    from worker import cli
    from worker.cli import enqueue as cli_enqueue
    from worker.settings import get_settings

    config = tmp_path / "sendq.toml"
    config.write_text("")
    monkeypatch.setenv("SENDQ_CONFIG", str(config))
    monkeypatch.setattr(cli_enqueue, "_producer", lambda: producer)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        one = runner.invoke(cli.app, ["enqueue", "--to", to, "--body", f"cli {to}", "--json"])
        assert one.exit_code == 0, one.output
        bad = runner.invoke(cli.app, ["enqueue", "--to", to, "--body", ""])
        assert bad.exit_code == 1
        rows = tmp_path / "t.csv"
        rows.write_text(f"to,body\n{to},file {to}\n{to[:-3]},short\n")
        many = runner.invoke(cli.app, ["enqueue", "--file", str(rows), "--json"])
        assert many.exit_code in (0, 1), many.output
    finally:
        get_settings.cache_clear()


async def test_every_providers_credentials_and_every_number_stay_out_of_the_rendered_logs(
    sim, aclient, client, ns, queue, redis_url, monkeypatch, tmp_path
) -> None:
    sim_cfg = SimulatorConfig(port=0)
    providers = _secret_adapters(sim, sim_cfg)
    route = list(providers)
    pipeline = build_pipeline(
        PipelineConfig(
            queue=queue,
            public_url="http://127.0.0.1:9",
            routes={"default": route},
            numbers={name: [f"+1201555{i:04d}"] for i, name in enumerate(route)},
            max_attempts=len(route) + 1,
            backoff=Backoff(1, 10),
        ),
        aclient,
        ns,
        providers,
        AsyncBreakers(aclient, "provider", Policy(consecutive=100), ns, cache_ms=0),
        sleep=no_sleep,
    )
    numbers = [number_for(c, i + 20) for i, c in enumerate(["att", "verizon", "tmobile"])]
    producer = Producer(client, ns=ns, queue=queue)
    with capture_logs(processors=logs_module.processors()) as logs:
        structlog.contextvars.bind_contextvars(
            twilio_auth_token=AUTH_TOKEN, vonage_signature_secret=SECRETS["vonage_signature_secret"]
        )
        try:
            ids = [
                a.message_id
                for a in producer.enqueue_many(
                    {"to": n, "body": f"hello {n}", "campaign": "gotv"} for n in numbers
                ).accepted
            ]
            for msg_id in ids:
                for _ in range(len(route) + 1):
                    await pipeline.deliver(msg_id)
            _exercise_the_webhook_app(redis_url, ns, ids, numbers[0])
            _exercise_the_cli(monkeypatch, tmp_path, producer, numbers[1])
            structlog.get_logger("test").warning(
                "a careless message",
                detail=f"Authorization: Bearer {SECRETS['telnyx_api_key']} to {numbers[2]}",
                url=f"https://user:{SECRETS['plivo_auth_token']}@api.example/x",
                headers={
                    "Authorization": "Basic abc",
                    "client_secret": SECRETS["bandwidth_client_secret"],
                },
            )
        finally:
            structlog.contextvars.clear_contextvars()
    await asyncio.gather(*(p.aclose() for p in providers.values()))
    assert len(logs) > 10
    # Every refused credential was tried, then Bandwidth's OAuth2 token (a Bearer header) sent.
    sent_by = {client.hget(keys.message(i, ns), "provider") for i in ids}
    assert sent_by == {b"bandwidth_ok"}, sent_by
    assert {e.get("provider") for e in logs} >= {"telnyx", "plivo", "vonage"}, logs
    text = json.dumps(logs, default=str)
    for secret in _every_secret(sim_cfg):
        assert secret not in text, secret
    for n in numbers:
        assert n not in text and n[2:] not in text, n
    for n in numbers:  # nor its last 7 digits in any spelling
        assert n[-7:] not in text.replace("-", "").replace(" ", ""), n
    assert re.search(r"\*{6,}\d{4}", text)  # numbers appear, masked to their last 4 digits


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("api_secret", "s"),
        ("client_secret", "s"),
        ("signature_secret", "s"),
        ("callback_password", "s"),
        ("access_token", "s"),
        ("twilio_auth_token", "s"),
        ("bandwidth_client_secret", "s"),
        ("Authorization", "Bearer s"),
        ("x-api-key", "s"),
    ],
)
def test_a_credential_bound_under_any_of_its_names_is_masked(key: str, value: str) -> None:
    from worker.logs import scrub_processor

    assert scrub_processor(None, "info", {"event": "x", key: value, "n": {key: value}}) == {
        "event": "x",
        key: "***",
        "n": {key: "***"},
    }


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("{'authorization': 'Basic dXNlcjpw'}", "{'authorization': 'Basic ***'}"),
        ("token request failed: bearer eyJabc", "token request failed: bearer ***"),
        ("client_secret=zz&client_id=sendq", "client_secret=***&client_id=sendq"),
        ('{"api_secret": "zz"}', '{"api_secret": "***"}'),
        ("https://u:pw@api.example/x", "https://u:***@api.example/x"),
        ("token expired; password wrong", "token expired; password wrong"),
    ],
)
def test_credentials_spelt_out_inside_a_message_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def test_the_configured_chain_renders_no_secret(monkeypatch, capsys) -> None:
    monkeypatch.setattr(logs_module, "_configured", False)
    try:
        logs_module.configure("info", json=True)
        structlog.get_logger("x").warning(
            "sending to +12015550123 with Bearer KEYabc",
            api_secret="zz-vonage",
            error="auth_token=hunter2",
        )
        out = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
    event = json.loads(out.strip().splitlines()[-1])
    assert event["event"] == "sending to *******0123 with Bearer ***"
    assert (event["api_secret"], event["error"]) == ("***", "auth_token=***")
