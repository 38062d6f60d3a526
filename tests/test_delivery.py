"""The send pipeline against the simulator over loopback HTTP and a real Redis."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
import structlog

from tests import parts
from tests.conftest import AUTH_TOKEN
from worker import keys, wire
from worker.alerts import Alerter
from worker.breaker import FAILURE_WEIGHT, AsyncBreakers, Breakers, Policy
from worker.enqueue import Producer
from worker.models import Category
from worker.providers.base import OutboundText, SendResult
from worker.providers.twilio import TwilioProvider
from worker.retry import Backoff
from worker.sendpath import Pipeline, PipelineConfig
from worker.sendpath.claim import TAKEOVER_COUNTER
from worker.sendpath.config import DEFAULT_NO_PROVIDER_MAX_WAIT_MS
from worker.sendpath.ledger import attempt_fields
from worker.simulator.carriers import number_for
from worker.store import Store

SID = "AC" + "1" * 32


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def pipeline(
    sim: str, aclient: aioredis.Redis, ns: str, queue: str
) -> AsyncIterator[Pipeline]:
    provider = TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim, timeout_s=2)
    config = PipelineConfig(
        queue=queue,
        public_url="http://127.0.0.1:9",  # receipts are not under test here
        routes={"default": ["twilio"]},
        numbers={"twilio": ["+12015550100", "+12015550101"]},
        max_attempts=3,
        backoff=Backoff(base_ms=1000, cap_ms=10_000),
    )
    breakers = AsyncBreakers(aclient, "provider", Policy(consecutive=100, min_calls=1000), ns)
    yield parts.pipeline(config, aclient, ns, {"twilio": provider}, breakers)
    await provider.aclose()


def enqueue(client: redis.Redis, ns: str, queue: str, **job: Any) -> str:
    job.setdefault("to", number_for("att", 1))
    job.setdefault("body", "hello from a test")
    return Producer(client, ns=ns, queue=queue).enqueue(job).message_id


def due(client: redis.Redis, ns: str, msg_id: str) -> None:
    """The text's retry time has come: its delayed message is now on time, not early."""
    client.hset(keys.message(msg_id, ns), "eta_ms", 0)


def scenario(sim: str, **data: Any) -> None:
    httpx.post(f"{sim}/sim/scenario", json=data).raise_for_status()


def report(sim: str) -> dict[str, Any]:
    return httpx.get(f"{sim}/sim/report").json()  # type: ignore[no-any-return]


async def test_a_text_is_sent_once_and_recorded_sent(pipeline, client, ns, queue, sim) -> None:
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "sent"
    record = Store(client, ns).get(msg_id)
    assert record is not None
    assert record["status"] == "sent" and record["provider"] == "twilio"
    assert record["provider_message_id"].startswith("SM")
    assert report(sim)["accepted"] == 1


async def test_a_redelivered_text_is_never_sent_twice(pipeline, client, ns, queue, sim) -> None:
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "sent"
    assert await pipeline.deliver(msg_id) == "skipped"
    assert report(sim)["accepted"] == 1


async def test_a_sticky_sender_is_used(pipeline, client, ns, queue, sim) -> None:
    to = number_for("verizon", 7)
    for i in range(3):
        await pipeline.deliver(enqueue(client, ns, queue, to=to, body=f"sticky {i}"))
    inbox = httpx.get(f"{sim}/sim/inbox/{to}").json()
    texts = inbox["texts"] if isinstance(inbox, dict) else inbox
    assert len({t["from"] for t in texts}) == 1


@pytest.mark.parametrize(
    ("code", "status"),
    [("30007", "failed"), ("21211", "failed"), ("21610", "suppressed"), ("30005", "failed")],
)
async def test_a_permanent_answer_ends_the_text_after_one_request(
    pipeline, client, ns, queue, sim, code: str, status: str
) -> None:
    scenario(sim, rules=[{"error_code": code, "mode": "sync"}])
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == status
    record = Store(client, ns).get(msg_id)
    assert record is not None and record["error_code"] == code
    assert report(sim)["requests"] == 1


async def test_a_provider_fault_is_retried_later_without_losing_the_text(
    pipeline, client, ns, queue, sim
) -> None:
    scenario(sim, rules=[{"http_status": 503}])
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "retry"
    record = Store(client, ns).get(msg_id)
    assert record is not None
    assert (record["status"], record["failures"], record["error_code"]) == ("queued", "1", "20503")
    # Quick retries inside the attempt, then one delayed redelivery queued for dramatiq.
    assert report(sim)["requests"] == 3
    assert client.llen(wire.queue_key(wire.delay_queue(queue))) == 1


async def test_exhausted_retries_end_the_text_dead_with_the_last_error(
    pipeline, client, ns, queue, sim
) -> None:
    scenario(sim, rules=[{"http_status": 500}])
    msg_id = enqueue(client, ns, queue)
    outcomes = []
    for _ in range(3):
        outcomes.append(await pipeline.deliver(msg_id))
        due(client, ns, msg_id)
    assert outcomes == ["retry", "retry", "dead"]
    record = Store(client, ns).get(msg_id)
    assert (
        record is not None
        and record["status"] == "dead"
        and record["error_code"] in ("20500", "http_500")
    )


async def test_throttling_spends_no_retry_budget(pipeline, client, ns, queue, sim) -> None:
    scenario(sim, rules=[{"error_code": "20429", "mode": "sync"}])
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "retry"
    record = Store(client, ns).get(msg_id)
    assert record is not None and record["failures"] == "0"


async def test_a_text_past_its_window_expires_unsent(pipeline, client, ns, queue, sim) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    msg_id = enqueue(client, ns, queue, send_before=past)
    assert await pipeline.deliver(msg_id) == "expired"
    assert report(sim)["requests"] == 0


def left_sending(
    client: redis.Redis, ns: str, queue: str, *, lease_until_ms: int, attempt_open: bool = False
) -> str:
    """A text some worker claimed, with its lease ending at ``lease_until_ms``.

    ``attempt_open``: that worker had written an HTTP attempt and not its outcome.
    """
    msg_id = enqueue(client, ns, queue)
    fields: dict[str, object] = {"lease_until_ms": lease_until_ms, "lease_id": "gone"}
    if attempt_open:
        fields.update(attempt_fields(1, "twilio", "+12015550100", 1))
    Store(client, ns).transition(msg_id, ["queued"], "sending", reason="claimed", fields=fields)
    return msg_id


async def test_a_text_whose_dead_worker_never_sent_it_is_taken_over_and_sent(
    pipeline, client, ns, queue, sim
) -> None:
    msg_id = left_sending(client, ns, queue, lease_until_ms=1)
    store = Store(client, ns)
    assert await pipeline.deliver(msg_id) == "sent"
    assert store.counters()[TAKEOVER_COUNTER] == 1
    assert "possible_double" not in store.get(msg_id)  # type: ignore[operator]


async def test_a_text_whose_dead_worker_was_mid_send_waits_unconfirmed_not_resent(
    pipeline, client, ns, queue, sim
) -> None:
    msg_id = left_sending(client, ns, queue, lease_until_ms=1, attempt_open=True)
    store = Store(client, ns)
    assert await pipeline.deliver(msg_id) == "skipped"
    record = store.get(msg_id)
    assert record is not None and record["status"] == "unconfirmed"
    assert report(sim)["requests"] == 0
    # A message comes back to settle it once the wait for evidence is over.
    timed = wire.delay_queue(wire.timed_queue(queue))
    assert client.llen(wire.queue_key(timed)) == 1


async def test_two_workers_finding_a_dead_workers_text_send_it_once(
    pipeline, client, ns, queue, sim
) -> None:
    msg_id = left_sending(client, ns, queue, lease_until_ms=1)
    store = Store(client, ns)
    outcomes = await asyncio.gather(pipeline.deliver(msg_id), pipeline.deliver(msg_id))
    assert sorted(outcomes) == ["sent", "skipped"]
    assert report(sim)["requests"] == 1
    assert store.counters()[TAKEOVER_COUNTER] == 1


async def test_a_text_another_worker_is_sending_waits_for_its_lease(
    pipeline, client, ns, queue, sim
) -> None:
    msg_id = left_sending(client, ns, queue, lease_until_ms=2**50)
    assert await pipeline.deliver(msg_id) == "skipped"
    assert report(sim)["requests"] == 0
    # It looks again on the timed queue: on the main one it would wait behind the backlog.
    timed = wire.delay_queue(wire.timed_queue(queue))
    assert client.llen(wire.queue_key(timed)) == 1


@pytest.fixture
async def limited(pipeline: Pipeline, aclient: aioredis.Redis, ns: str) -> Pipeline:
    from worker.ratelimit import AsyncLimiter
    from worker.settings import LimitsSettings

    pipeline.config.limits = LimitsSettings(
        short_wait_ms=250,
        number_types={"slow": {"rate": 1}, "brisk": {"rate": 10}},
        numbers={"+12015550100": "slow", "+12015550101": "slow"},
        default_number_type="brisk",
    )
    pipeline.parts.limiter = AsyncLimiter(aclient, ns)
    return pipeline


async def test_a_text_over_its_numbers_limit_waits_for_its_slot_without_spending_retries(
    limited, client, ns, queue, sim
) -> None:
    to = number_for("att", 3)
    first, second = (
        enqueue(client, ns, queue, to=to, body="a"),
        enqueue(client, ns, queue, to=to, body="b"),
    )
    assert await limited.deliver(first) == "sent"
    assert await limited.deliver(second) == "deferred"
    record = Store(client, ns).get(second)
    assert record is not None
    assert (record["status"], record.get("failures", "0")) == ("queued", "0")
    assert record["rl_held"].startswith("number:")
    # It waits on its own queue, not behind the backlog of the main one.
    timed = wire.delay_queue(wire.timed_queue(queue))
    assert client.llen(wire.queue_key(timed)) == 1
    assert report(sim)["requests"] == 1


async def test_at_its_slot_a_deferred_text_goes_without_asking_the_held_limiter_again(
    limited, client, ns, queue, sim
) -> None:
    import asyncio

    to = number_for("att", 3)
    first, second = (
        enqueue(client, ns, queue, to=to, body="a"),
        enqueue(client, ns, queue, to=to, body="b"),
    )
    await limited.deliver(first)
    await limited.deliver(second)
    Store(client, ns).transition(second, ["queued"], "queued", reason="test")
    await asyncio.sleep(1.0)
    assert await limited.deliver(second) == "sent"
    record = Store(client, ns).get(second)
    assert record is not None and record["rl_held"] == ""


async def test_a_short_wait_is_slept_in_the_worker(limited, client, ns, queue, sim) -> None:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    limited.parts.sleep = sleep
    to = number_for("tmobile", 4)  # a "brisk" number: 10/s, 100 ms apart
    limited.config.numbers = {"twilio": ["+12015550199"]}
    ids = [enqueue(client, ns, queue, to=to, body=f"brisk {i}") for i in range(3)]
    assert [await limited.deliver(i) for i in ids] == ["sent", "sent", "sent"]
    # About one and two slots (100 and 200 ms) ahead; the limiters read the clock at
    # slightly different moments, so a loaded machine sees a millisecond or so more.
    assert len(slept) == 2 and all(0.05 < s <= 0.25 for s in slept)


# -- pacing: throttling and no open provider spend no retry budget -----------------------------


class Highest(random.Random):
    """The top of every jitter range, so each delay is its ceiling."""

    def random(self) -> float:
        return 1.0


def retry_delays_ms(client: redis.Redis, ns: str, msg_id: str) -> list[int]:
    """The delays of the text's requeues, from its history."""
    reasons = [entry["why"] for entry in Store(client, ns).history(msg_id)]
    found = (re.search(r"retry in (\d+) ms", r) for r in reasons)
    return [int(m.group(1)) for m in found if m]


async def test_throttling_without_retry_after_backs_off_doubling_to_the_cap(
    pipeline, client, ns, queue, sim
) -> None:
    pipeline.parts.rng = Highest()
    scenario(sim, rules=[{"error_code": "20429", "mode": "sync"}])  # no Retry-After
    msg_id = enqueue(client, ns, queue)
    for _ in range(6):
        assert await pipeline.deliver(msg_id) == "retry"
        due(client, ns, msg_id)
    # retry_base_ms 1000 doubling per throttle, capped at retry_cap_ms 10 000.
    assert retry_delays_ms(client, ns, msg_id) == [1000, 2000, 4000, 8000, 10_000, 10_000]
    record = Store(client, ns).get(msg_id)
    assert record is not None
    assert (record["status"], record["failures"], record["throttles"]) == ("queued", "0", "6")


async def test_throttle_backoff_is_jittered_over_its_whole_range(
    pipeline, client, ns, queue, sim
) -> None:
    pipeline.parts.rng = random.Random(7)
    scenario(sim, rules=[{"error_code": "20429", "mode": "sync"}])
    ids = [enqueue(client, ns, queue, body=f"jitter {i}") for i in range(8)]
    for msg_id in ids:
        assert await pipeline.deliver(msg_id) == "retry"
    delays = [retry_delays_ms(client, ns, msg_id)[0] for msg_id in ids]
    assert all(1 <= d <= 1000 for d in delays) and len(set(delays)) == len(delays)


async def test_a_sent_text_forgets_its_throttles(pipeline, client, ns, queue, sim) -> None:
    scenario(sim, rules=[{"error_code": "20429", "mode": "sync"}])
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "retry"
    scenario(sim, rules=[])
    assert await pipeline.deliver(msg_id) == "sent"
    record = Store(client, ns).get(msg_id)
    assert record is not None and (record["throttles"], record["failures"]) == ("0", "0")


async def test_throttling_with_retry_after_waits_what_the_provider_asks(
    pipeline, client, ns, queue, sim
) -> None:
    class Slow(TwilioProvider):
        async def send(self, text: OutboundText) -> SendResult:
            return SendResult(Category.THROTTLED, error_code="20429", retry_after_s=7)

    pipeline.parts.providers = {
        "twilio": Slow(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim)
    }
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "retry"
    due(client, ns, msg_id)
    assert await pipeline.deliver(msg_id) == "retry"
    assert retry_delays_ms(client, ns, msg_id) == [7000, 7000]
    record = Store(client, ns).get(msg_id)
    assert record is not None and record["failures"] == "0"


@pytest.fixture
def provider_breakers(client: redis.Redis, ns: str) -> Breakers:
    return Breakers(client, "provider", Policy(), ns)


async def test_with_every_provider_paused_texts_back_off_unspent_and_go_after_resume(
    pipeline, client, ns, queue, sim, provider_breakers
) -> None:
    pipeline.parts.rng = Highest()
    provider_breakers.pause("twilio", who="test", reason="maintenance")
    ids = [enqueue(client, ns, queue, body=f"paused {i}") for i in range(3)]
    with structlog.testing.capture_logs() as logs:
        for _ in range(7):
            assert [await pipeline.deliver(msg_id) for msg_id in ids] == ["retry"] * 3
            for msg_id in ids:
                due(client, ns, msg_id)
    for msg_id in ids:
        # 1 s doubling, capped at DEFAULT_NO_PROVIDER_MAX_WAIT_MS.
        delays = retry_delays_ms(client, ns, msg_id)
        assert delays == [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]
        assert DEFAULT_NO_PROVIDER_MAX_WAIT_MS == 30_000
        record = Store(client, ns).get(msg_id)
        assert record is not None
        assert (record["status"], record["failures"], record["no_provider_waits"]) == (
            "queued",
            "0",
            "7",
        )
    # No error (or warning) per bounce; nothing reached the provider; every bounce requeued.
    assert not [e for e in logs if e["log_level"] in ("error", "warning")]
    assert report(sim)["requests"] == 0
    assert client.llen(wire.queue_key(wire.delay_queue(queue))) == 21

    provider_breakers.resume("twilio", who="test")
    pipeline.parts.provider_breakers = AsyncBreakers(
        pipeline.parts.provider_breakers.client, "provider", Policy(), ns
    )
    assert [await pipeline.deliver(msg_id) for msg_id in ids] == ["sent"] * 3
    record = Store(client, ns).get(ids[0])
    assert record is not None and record["no_provider_waits"] == "0"
    assert report(sim)["accepted"] == 3


async def test_with_every_provider_open_a_text_waits_for_the_earliest_cool_down(
    pipeline, client, ns, queue, sim
) -> None:
    breakers = AsyncBreakers(
        pipeline.parts.provider_breakers.client,
        "provider",
        Policy(consecutive=1, cooldown_s=20),
        ns,
    )
    pipeline.parts.provider_breakers = breakers
    await breakers.record("twilio", FAILURE_WEIGHT, "test")
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "retry"
    (delay_ms,) = retry_delays_ms(client, ns, msg_id)
    assert 19_000 < delay_ms <= 20_000
    record = Store(client, ns).get(msg_id)
    assert record is not None and record["failures"] == "0"


async def test_a_throttled_probe_does_not_close_a_half_open_breaker(
    pipeline, client, ns, queue, sim, provider_breakers
) -> None:
    breakers = AsyncBreakers(
        pipeline.parts.provider_breakers.client,
        "provider",
        Policy(consecutive=1, cooldown_s=0.001, probes=1),
        ns,
    )
    pipeline.parts.provider_breakers = breakers
    await breakers.record("twilio", FAILURE_WEIGHT, "test")
    await asyncio.sleep(0.01)  # past the cool-down: the next send is the probe
    scenario(sim, rules=[{"error_code": "20429", "mode": "sync"}])
    assert await pipeline.deliver(enqueue(client, ns, queue)) == "retry"
    assert report(sim)["requests"] >= 1
    # Counted a success, this one probe would have closed it; counted nothing, it
    # stays half-open, its window holding only the failure that opened it.
    status = provider_breakers.status("twilio")
    assert (status["state"], status["window_calls"]) == ("half_open", 1)


# -- ambiguous answers: the text may have gone -------------------------------------------------


@pytest.fixture
def two_routes(pipeline: Pipeline, sim: str) -> Pipeline:
    """The same simulator behind two provider names, so a failover would show."""
    backup = TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim, timeout_s=2)
    pipeline.parts.providers = {**pipeline.parts.providers, "backup": backup}
    pipeline.config.routes = {"default": ["twilio", "backup"]}
    pipeline.config.numbers = {**pipeline.config.numbers, "backup": ["+12015550102"]}
    return pipeline


async def test_an_ambiguous_answer_leaves_the_text_unconfirmed_never_resent_or_failed_over(
    two_routes, client, ns, queue, sim
) -> None:
    scenario(sim, rules=[{"error_code": "30008", "mode": "sync"}])
    msg_id = enqueue(client, ns, queue)
    assert await two_routes.deliver(msg_id) == "unconfirmed"
    record = Store(client, ns).get(msg_id)
    assert record is not None
    assert (record["status"], record["error_code"]) == ("unconfirmed", "30008")
    assert record["settle_at_ms"]
    assert report(sim)["requests"] == 1  # never failed over, never quick-retried
    # It is settled later, on the timed queue; no retry is queued.
    assert client.llen(wire.queue_key(wire.delay_queue(queue))) == 0
    assert client.llen(wire.queue_key(wire.delay_queue(wire.timed_queue(queue)))) == 1


# -- alerts say why -----------------------------------------------------------------------------


class Recording(Alerter):
    def __init__(self) -> None:
        super().__init__([])
        self.calls: list[tuple[str, str, str, str]] = []

    def announce(self, kind: str, name: str, transition: str, why: str = "", **extra: Any) -> None:
        self.calls.append((kind, name, transition, why))


async def test_a_breaker_alert_says_why_it_opened(pipeline, client, ns, queue, sim) -> None:
    alerter = Recording()
    pipeline.parts.alerter = alerter
    pipeline.parts.provider_breakers = AsyncBreakers(
        pipeline.parts.provider_breakers.client, "provider", Policy(consecutive=1), ns
    )
    scenario(sim, rules=[{"http_status": 503}])
    assert await pipeline.deliver(enqueue(client, ns, queue)) == "retry"
    [(kind, name, transition, why)] = alerter.calls
    assert (kind, name, transition) == ("provider", "twilio", "closed>open")
    assert why.startswith("1 failures in a row, last 20503")
