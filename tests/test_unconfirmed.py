"""Unconfirmed texts are settled by evidence first, then by worker.on_unconfirmed.

An ambiguous answer leaves a text ``unconfirmed``; when the wait for evidence is
over, its settle message comes back. These tests make it due at once and deliver it.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.conftest import AUTH_TOKEN
from tests.test_attempts import record, two_provider_pipeline, webhook_client
from tests.test_delivery import SID, enqueue, report, scenario
from worker.providers.base import CANNOT_TELL, NOT_FOUND, SentQuery
from worker.providers.twilio import TwilioProvider
from worker.sendpath import Pipeline
from worker.store import Store


class Answering(TwilioProvider):
    """The simulator's Twilio, with a look-up that says what the test wants."""

    def __init__(self, found: object, **kw: Any) -> None:
        super().__init__(**kw)
        self.found = found
        self.asked: list[SentQuery] = []

    async def find_sent(self, query: SentQuery) -> str | object:
        self.asked.append(query)
        return self.found


def pipeline_finding(aclient, ns, queue, sim, found: object, policy: str = "fail") -> Pipeline:
    pipeline = two_provider_pipeline(aclient, ns, queue, sim, sim)
    pipeline.parts.providers["twilio"] = Answering(
        found, account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim
    )
    pipeline.config.on_unconfirmed = policy
    return pipeline


async def unconfirmed_then_due(pipeline: Pipeline, client: redis.Redis, ns, queue, sim) -> str:
    scenario(sim, rules=[{"error_code": "30008", "mode": "sync"}])
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "unconfirmed"
    scenario(sim, rules=[])  # the provider answers plainly from now on
    client.hset(f"{ns}:msg:{msg_id}", "settle_at_ms", 1)  # the wait is over
    return msg_id


async def test_a_text_the_provider_found_is_settled_sent_and_never_sent_again(
    aclient, client, ns, queue, sim
) -> None:
    pipeline = pipeline_finding(aclient, ns, queue, sim, "SMfound")
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    assert await pipeline.deliver(msg_id) == "skipped"
    rec = record(client, ns, msg_id)
    assert (rec["status"], rec["provider_message_id"], rec["a1:pmid"]) == (
        "sent",
        "SMfound",
        "SMfound",
    )
    assert report(sim)["requests"] == 1
    asked = pipeline.parts.providers["twilio"].asked  # type: ignore[attr-defined]
    assert [(q.to, q.sender) for q in asked] == [(rec["to"], rec["a1:from"])]


async def test_a_text_the_provider_never_had_is_sent_again_and_counted_all_the_same(
    aclient, client, ns, queue, sim
) -> None:
    # Most likely nothing went; but a request still in transit (a partition, a
    # kernel retransmitting) could land later, so the resend is counted.
    pipeline = pipeline_finding(aclient, ns, queue, sim, NOT_FOUND, policy="fail")
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    assert await pipeline.deliver(msg_id) == "sent"
    rec = record(client, ns, msg_id)
    assert (rec["possible_double"], rec["attempt"], rec["resend_pending"]) == ("1", "2", "")
    assert Store(client, ns).counters()["possible_doubles"] == 1


async def test_with_no_evidence_and_on_unconfirmed_fail_the_text_stays_unconfirmed(
    aclient, client, ns, queue, sim
) -> None:
    pipeline = pipeline_finding(aclient, ns, queue, sim, CANNOT_TELL, policy="fail")
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    assert await pipeline.deliver(msg_id) == "skipped"
    rec = record(client, ns, msg_id)
    assert (rec["status"], rec["settle_at_ms"]) == ("unconfirmed", "")
    assert "on_unconfirmed = fail" in Store(client, ns).history(msg_id)[-1]["why"]
    assert report(sim)["requests"] == 1
    # Settled: a duplicate settle message changes nothing.
    assert await pipeline.deliver(msg_id) == "skipped"


async def test_with_no_evidence_and_on_unconfirmed_resend_the_resend_is_counted(
    aclient, client, ns, queue, sim
) -> None:
    pipeline = pipeline_finding(aclient, ns, queue, sim, CANNOT_TELL, policy="resend")
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    assert await pipeline.deliver(msg_id) == "sent"
    rec = record(client, ns, msg_id)
    assert rec["possible_double"] == "1"
    assert Store(client, ns).counters()["possible_doubles"] == 1
    assert report(sim)["requests"] == 2


@pytest.mark.parametrize("policy", ["fail", "resend"])
async def test_a_receipt_for_the_attempt_settles_an_unconfirmed_text_first(
    aclient, client, redis_url, ns, queue, sim, policy: str
) -> None:
    from tests.test_webhooks import TOKEN, post

    pipeline = pipeline_finding(aclient, ns, queue, sim, CANNOT_TELL, policy=policy)
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    hooks = webhook_client(redis_url, ns)
    assert post(hooks, msg_id, "delivered", attempt=1, token=TOKEN).status_code == 200
    assert record(client, ns, msg_id)["status"] == "delivered"
    assert await pipeline.deliver(msg_id) == "skipped"
    assert report(sim)["requests"] == 1


async def test_a_counted_resend_shows_in_metrics(
    aclient, client, redis_url, ns, queue, sim
) -> None:
    from tests.test_admin import TOKEN, app, auth

    pipeline = pipeline_finding(aclient, ns, queue, sim, CANNOT_TELL, policy="resend")
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    assert await pipeline.deliver(msg_id) == "sent"
    with app(redis_url, ns, TOKEN) as api:
        scraped = api.get("/metrics", headers=auth()).text
    assert 'sendq_events{name="possible_doubles"} 1.0' in scraped
    assert 'sendq_texts{campaign="default",status="sent"} 1.0' in scraped


async def test_a_settle_message_that_comes_early_is_put_back_for_the_time_left(
    aclient, client, ns, queue, sim
) -> None:
    from worker import wire

    pipeline = pipeline_finding(aclient, ns, queue, sim, CANNOT_TELL, policy="resend")
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    client.hset(f"{ns}:msg:{msg_id}", "settle_at_ms", 2**45)  # far ahead: early
    delayed = wire.queue_key(wire.delay_queue(wire.timed_queue(queue)))
    before = client.llen(delayed)
    assert await pipeline.deliver(msg_id) == "skipped"
    assert client.llen(delayed) == before + 1  # another settle message is on its way
    assert record(client, ns, msg_id)["status"] == "unconfirmed"


async def test_a_busy_look_up_is_asked_again_later_not_taken_as_no_evidence(
    aclient, client, ns, queue, sim
) -> None:
    from worker.providers.base import ASK_AGAIN

    pipeline = pipeline_finding(aclient, ns, queue, sim, ASK_AGAIN, policy="resend")
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    assert await pipeline.deliver(msg_id) == "skipped"
    rec = record(client, ns, msg_id)
    assert (rec["status"], rec["lookups"]) == ("unconfirmed", "1")
    assert int(rec["settle_at_ms"]) > 0 and "possible_double" not in rec
    assert "look-up was busy" in Store(client, ns).history(msg_id)[-1]["why"]


async def test_an_unconfirmed_text_past_its_window_is_not_resent_and_is_no_possible_double(
    aclient, client, ns, queue, sim
) -> None:
    pipeline = pipeline_finding(aclient, ns, queue, sim, CANNOT_TELL, policy="resend")
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    client.hset(f"{ns}:msg:{msg_id}", "send_before_ms", 1)  # past its window meanwhile
    # The settler ends it itself: nothing is left for the pipeline to send.
    assert await pipeline.deliver(msg_id) == "skipped"
    assert record(client, ns, msg_id)["status"] == "expired"
    assert "possible_double" not in record(client, ns, msg_id)
    assert "possible_doubles" not in Store(client, ns).counters()


async def test_twilios_look_up_finds_a_text_though_this_workers_clock_runs_ahead(sim) -> None:
    import httpx

    from worker.store import now_ms

    provider = TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim)
    to, sender, body = "+12015550188", "+12015550100", "skewed clocks"
    form = {"To": to, "From": sender, "Body": body}
    httpx.post(
        f"{sim}/2010-04-01/Accounts/{SID}/Messages.json", data=form, auth=(SID, AUTH_TOKEN)
    ).raise_for_status()
    ahead = SentQuery(message_id="m", to=to, sender=sender, body=body, after_ms=now_ms() + 60_000)
    assert str(await provider.find_sent(ahead)).startswith("SM")
    other = SentQuery(message_id="m", to=to, sender=sender, body="another", after_ms=now_ms())
    assert await provider.find_sent(other) is NOT_FOUND
    await provider.aclose()


async def test_a_resend_requeued_before_its_attempt_is_still_counted_when_it_goes(
    aclient, client, ns, queue, sim
) -> None:
    from tests.test_delivery import due
    from worker.breaker import AsyncBreakers, Breakers, Policy

    pipeline = pipeline_finding(aclient, ns, queue, sim, CANNOT_TELL, policy="resend")
    pipeline.parts.provider_breakers = AsyncBreakers(aclient, "provider", Policy(), ns, cache_ms=0)
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    for name in ("twilio", "backup"):
        Breakers(client, "provider", Policy(), ns).pause(name, who="test", reason="outage")
    assert await pipeline.deliver(msg_id) == "retry"  # no provider: queued, no attempt yet
    for name in ("twilio", "backup"):
        Breakers(client, "provider", Policy(), ns).resume(name, who="test")
    due(client, ns, msg_id)
    assert await pipeline.deliver(msg_id) == "sent"
    assert record(client, ns, msg_id)["possible_double"] == "1"
    assert Store(client, ns).counters()["possible_doubles"] == 1
