"""Opt-outs on the send path: at enqueue, at send time, from providers' answers, and replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from tests import parts
from tests.conftest import AUTH_TOKEN
from worker import keys
from worker.models import STOP_REPLY, SendJob
from worker.optouts import OptoutList, Source, operator_cause
from worker.producer import Campaigns, Producer, Reply
from worker.providers.twilio import TwilioProvider
from worker.retry import Backoff
from worker.sendpath import Pipeline, PipelineConfig
from worker.simulator.carriers import number_for
from worker.store import Store

SID = "AC" + "1" * 32
NUMBERS = ["+12015550100", "+12015550101"]
CAMPAIGNS = Campaigns(default_org="acme", orgs={"gotv": "acme", "other": "beta"})


@pytest.fixture
async def pipeline(
    sim: str, aclient: aioredis.Redis, ns: str, queue: str
) -> AsyncIterator[Pipeline]:
    provider = TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim, timeout_s=2)
    config = PipelineConfig(
        queue=queue,
        public_url="http://127.0.0.1:9",
        routes={"default": ["twilio"]},
        numbers={"twilio": NUMBERS},
        max_attempts=3,
        backoff=Backoff(base_ms=1000, cap_ms=10_000),
        orgs={"gotv": "acme", "other": "beta"},
        default_org="acme",
    )
    yield parts.pipeline(config, aclient, ns, {"twilio": provider})
    await provider.aclose()


def producer(client: redis.Redis, ns: str, queue: str) -> Producer:
    return Producer(client, ns=ns, queue=queue, campaigns=CAMPAIGNS)


def opt_out(client: redis.Redis, ns: str, number: str, org: str = "acme") -> None:
    OptoutList(client, ns).add(
        org, number, source=Source.OPERATOR, by="test", cause=operator_cause("test")
    )


def sim_texts(sim: str, number: str) -> list[dict[str, Any]]:
    texts: list[dict[str, Any]] = httpx.get(f"{sim}/sim/inbox/{number}").json()["texts"]
    return texts


def test_a_text_to_a_person_who_opted_out_is_recorded_suppressed_at_enqueue(
    client, ns, queue
) -> None:
    person = number_for("att", 11)
    opt_out(client, ns, person)
    accepted = producer(client, ns, queue).enqueue({"to": person, "body": "hi", "campaign": "gotv"})
    record = Store(client, ns).get(accepted.message_id)
    assert accepted.suppressed and record is not None
    assert record["status"] == "suppressed"
    assert (
        "opted out of organisation acme" in Store(client, ns).history(accepted.message_id)[0]["why"]
    )
    # Nothing was queued for it.
    assert not client.lrange(f"dramatiq:{queue}", 0, -1)


def test_an_opt_out_of_one_organisation_does_not_suppress_another(client, ns, queue) -> None:
    person = number_for("att", 12)
    opt_out(client, ns, person, org="acme")
    report = producer(client, ns, queue).enqueue_many(
        [
            {"to": person, "body": "a", "campaign": "gotv"},
            {"to": person, "body": "b", "campaign": "other"},
        ]
    )
    assert [a.suppressed for a in report.accepted] == [True, False]
    assert report.queued == 1 and len(report.suppressed) == 1


async def test_a_person_who_opts_out_while_the_text_waits_is_not_texted(
    pipeline, client, ns, queue, sim
) -> None:
    person = number_for("att", 13)
    msg_id = (
        producer(client, ns, queue)
        .enqueue({"to": person, "body": "hi", "campaign": "gotv"})
        .message_id
    )
    opt_out(client, ns, person)  # after enqueue, before the worker gets to it
    assert await pipeline.deliver(msg_id) == "suppressed"
    assert Store(client, ns).get(msg_id)["status"] == "suppressed"  # type: ignore[index]
    assert sim_texts(sim, person) == []


async def test_every_campaign_of_the_organisation_honours_one_opt_out(
    pipeline, client, ns, queue, sim
) -> None:
    person = number_for("tmobile", 14)
    first = producer(client, ns, queue).enqueue({"to": person, "body": "a", "campaign": "gotv"})
    opt_out(client, ns, person)
    # The default campaign belongs to the same organisation (default_org).
    second = producer(client, ns, queue).enqueue({"to": person, "body": "b"})
    assert await pipeline.deliver(first.message_id) == "suppressed"
    assert second.suppressed
    assert sim_texts(sim, person) == []


async def test_a_provider_answer_that_says_opted_out_lists_the_person(
    pipeline, client, ns, queue, sim
) -> None:
    person = number_for("verizon", 15)
    httpx.post(
        f"{sim}/sim/scenario",
        json={"rules": [{"error": "opted_out", "mode": "sync", "provider": "twilio"}]},
    ).raise_for_status()
    msg_id = (
        producer(client, ns, queue)
        .enqueue({"to": person, "body": "hi", "campaign": "gotv"})
        .message_id
    )
    assert await pipeline.deliver(msg_id) == "suppressed"
    entry = OptoutList(client, ns).entry("acme", person)
    assert entry is not None
    assert entry["source"] == "provider_answer" and entry["by"] == "twilio"
    assert entry["cause"]["error_code"] == "21610" and entry["cause"]["message_id"] == msg_id
    # The next campaign of the organisation does not text them, through any provider.
    assert producer(client, ns, queue).enqueue({"to": person, "body": "again"}).suppressed


async def test_a_stop_confirmation_goes_through_the_number_and_provider_written_to(
    pipeline, client, ns, queue, sim
) -> None:
    person = number_for("att", 16)
    opt_out(client, ns, person)
    job = SendJob(to=person, body="You're unsubscribed.", campaign="gotv", key="reply:in1:stop")
    reply = Reply(inbound_id="in1", kind=STOP_REPLY, provider="twilio", sender=NUMBERS[1])
    accepted = producer(client, ns, queue).enqueue_reply(job, reply)
    assert not accepted.suppressed
    assert await pipeline.deliver(accepted.message_id) == "sent"
    (got,) = sim_texts(sim, person)
    assert got["from"] == NUMBERS[1] and got["body"] == "You're unsubscribed."
    # The same inbound text's reply again (a webhook posted twice) sends nothing more.
    again = producer(client, ns, queue).enqueue_reply(job, reply)
    assert again.duplicate and again.message_id == accepted.message_id


async def test_an_attempt_links_the_sending_number_and_person_to_the_text(
    pipeline, client, ns, queue, sim
) -> None:
    person = number_for("att", 17)
    msg_id = producer(client, ns, queue).enqueue({"to": person, "body": "hi"}).message_id
    assert await pipeline.deliver(msg_id) == "sent"
    sender = Store(client, ns).get(msg_id)["a1:from"]  # type: ignore[index]
    assert client.get(keys.last_outbound(sender, person, ns)) == msg_id.encode()


async def test_an_attempt_still_links_after_the_server_forgot_its_scripts(
    pipeline, client, ns, queue, sim
) -> None:
    person = number_for("att", 18)
    msg_id = producer(client, ns, queue).enqueue({"to": person, "body": "hi"}).message_id
    client.script_flush()  # a restarted Redis without its script cache (the suite's own server)
    assert await pipeline.deliver(msg_id) == "sent"
    sender = Store(client, ns).get(msg_id)["a1:from"]  # type: ignore[index]
    assert client.get(keys.last_outbound(sender, person, ns)) == msg_id.encode()


async def test_a_person_who_opts_out_while_their_text_waits_for_a_retry_is_not_texted(
    sim, aclient, client, ns, queue
) -> None:
    """Review finding: the gates ran once per claim, and a throttled text's quick
    retry went out after a STOP that came during its wait."""
    import asyncio

    person = number_for("att", 19)
    provider = TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim, timeout_s=2)
    config = PipelineConfig(
        queue=queue,
        public_url="http://127.0.0.1:9",
        routes={"default": ["twilio"]},
        numbers={"twilio": NUMBERS},
        max_attempts=3,
        backoff=Backoff(base_ms=1000, cap_ms=10_000),
        default_org="acme",
    )

    async def stop_arrives_meanwhile(seconds: float) -> None:
        opt_out(client, ns, person)
        await asyncio.sleep(0.05)

    pipeline = parts.pipeline(
        config, aclient, ns, {"twilio": provider}, sleep=stop_arrives_meanwhile
    )
    httpx.post(
        f"{sim}/sim/scenario",
        json={"rules": [{"provider": "twilio", "http_status": 429, "until_s": 60}]},
    ).raise_for_status()
    msg_id = producer(client, ns, queue).enqueue({"to": person, "body": "hi"}).message_id
    assert await pipeline.deliver(msg_id) == "suppressed"
    assert sim_texts(sim, person) == []
    await provider.aclose()
