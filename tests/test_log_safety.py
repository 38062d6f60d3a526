"""Logs carry no full phone number and no secret, across a run that exercises every path."""

from __future__ import annotations

import asyncio

import httpx
import structlog
from structlog.testing import capture_logs

from tests.conftest import AUTH_TOKEN
from worker.alerts import Alerter
from worker.breaker import AsyncBreakers, Breakers, Policy
from worker.carriers import CarrierResolver
from worker.delivery import Pipeline, PipelineConfig
from worker.enqueue import Producer
from worker.logs import mask_text, safe_url
from worker.providers.twilio import TwilioProvider
from worker.retry import Backoff
from worker.simulator.carriers import number_for
from worker.store import AsyncStore

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
    pipeline = Pipeline(
        PipelineConfig(
            queue=queue,
            public_url="http://127.0.0.1:9",
            routes={"default": ["primary", "twilio"]},
            numbers={"primary": ["+12015550100"], "twilio": ["+12015550101"]},
            max_attempts=2,
            backoff=Backoff(1000, 10_000),
        ),
        AsyncStore(aclient, ns),
        providers,
        AsyncBreakers(aclient, "provider", Policy(consecutive=2), ns, cache_ms=0),
        carriers=CarrierResolver(aclient, ns=ns, lookup=httpx.AsyncClient(base_url=dead)),
        carrier_breakers=AsyncBreakers(aclient, "carrier", Policy(consecutive=2), ns, cache_ms=0),
        alerter=Alerter([SLACK], attempts=1),
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
    with capture_logs() as logs:
        for msg_id in ids:
            await pipeline.deliver(msg_id)
        Breakers(client, "carrier", Policy(), ns).resume("unknown:gotv", who="maria")
        httpx.post(f"{sim}/sim/scenario", json={"rules": [{"http_status": 500}]})
        for msg_id in ids:
            await pipeline.deliver(msg_id)
        assert pipeline.alerter is not None
        await pipeline.alerter.drain()
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
