"""Validity windows: a text still waiting past its send_before ends expired and is never sent.

Held (a paused carrier), throttled, deferred and unconfirmed texts, against the
simulator over loopback HTTP and a real Redis. Deadlines lie in the future when
a text is enqueued and claimed; the sweeper is told the time, and the expiry
gate is given a clock, so no test waits for a deadline to pass unless it says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from tests import parts
from tests.conftest import AUTH_TOKEN
from tests.test_delivery import enqueue as enqueue_one
from tests.test_delivery import scenario
from tests.test_holds import CARRIER_POLICY, enqueue, ops, sim_report
from tests.test_unconfirmed import pipeline_finding, unconfirmed_then_due
from worker import keys
from worker.breaker import AsyncBreakers, Policy
from worker.carriers import CarrierResolver
from worker.expiry import EXPIRED_REASON, ExpirySweeper
from worker.maintenance import HoldKeeper
from worker.providers.base import CANNOT_TELL, NOT_FOUND
from worker.providers.twilio import TwilioProvider
from worker.retry import Backoff
from worker.sendpath import Pipeline, PipelineConfig
from worker.sendpath.gates.expiry import ExpiryGate, past_send_before
from worker.store import Store, now_ms

SID = "AC" + "7" * 32
CAMPAIGN = "gotv"  # tests.test_holds.enqueue's campaign


class Clock:
    """A clock a test sets: epoch ms."""

    def __init__(self, at_ms: int) -> None:
        self.at_ms = at_ms

    def __call__(self) -> int:
        return self.at_ms


def expiring(pipeline: Pipeline, clock: Clock | None = None) -> Pipeline:
    """The pipeline with an expiry gate that knows the campaigns' deadlines (and the clock)."""
    gate = ExpiryGate(pipeline.config, clock or now_ms)
    pipeline.gates = [gate if isinstance(g, ExpiryGate) else g for g in pipeline.gates]
    return pipeline


@pytest.fixture
async def pipeline(sim, aclient: aioredis.Redis, ns, queue) -> AsyncIterator[Pipeline]:
    provider = TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim, timeout_s=2)
    # The simulator's carrier look-up: its numbers' carriers are what the test pauses.
    lookup = httpx.AsyncClient(base_url=sim, auth=(SID, AUTH_TOKEN))
    config = PipelineConfig(
        queue=queue,
        public_url="http://127.0.0.1:9",
        routes={"default": ["twilio"]},
        numbers={"twilio": ["+12015550100", "+12015550101"]},
        max_attempts=3,
        # A retry is due at once, so its message comes while the test watches.
        backoff=Backoff(base_ms=1, cap_ms=1),
    )
    yield parts.pipeline(
        config,
        aclient,
        ns,
        {"twilio": provider},
        AsyncBreakers(aclient, "provider", Policy(consecutive=100, min_calls=1000), ns),
        carriers=CarrierResolver(aclient, ns=ns, lookup=lookup),
        carrier_breakers=AsyncBreakers(aclient, "carrier", CARRIER_POLICY, ns, cache_ms=0),
    )
    await provider.aclose()
    await lookup.aclose()


def soon(seconds: float = 60) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def deadline_ms(client: redis.Redis, ns: str, msg_id: str) -> int:
    record = Store(client, ns).get(msg_id)
    assert record is not None
    return int(record["send_before_ms"])


def statuses(client: redis.Redis, ns: str, ids: list[str]) -> list[str]:
    return [row[0] for row in Store(client, ns).fields(ids, ["status"])]


def last_why(client: redis.Redis, ns: str, msg_id: str) -> str:
    return str(Store(client, ns).history(msg_id)[-1]["why"])


def sent_anything(sim: str) -> dict[str, Any]:
    report = sim_report(sim)
    return {"accepted": report["accepted"], "handsets": report["delivered_to_handsets"]}


NOTHING_SENT = {"accepted": 0, "handsets": 0}


# -- held ---------------------------------------------------------------------------------


async def test_texts_held_by_a_paused_carrier_past_send_before_end_expired_and_none_is_sent(
    pipeline, aclient, client, ns, queue, sim
) -> None:
    ops(client, ns).pause(f"att:{CAMPAIGN}", who="maria", reason="complaints")
    ids = enqueue(client, ns, queue, "att", 20, send_before=soon())
    assert [await pipeline.deliver(i) for i in ids] == ["held"] * 20
    past = deadline_ms(client, ns, ids[0]) + 1

    assert await ExpirySweeper(aclient, ns=ns).sweep(past) == 20
    assert statuses(client, ns, ids) == ["expired"] * 20
    assert last_why(client, ns, ids[0]) == EXPIRED_REASON
    assert client.zcard(keys.expiry(ns)) == 0
    # The carrier comes back: nothing is released, and their messages find them final.
    ops(client, ns).resume(f"att:{CAMPAIGN}", who="maria")
    assert await parts.keeper(aclient, queue, ns).tick() == 0
    assert client.llen(keys.hold(f"att:{CAMPAIGN}", ns)) == 0
    assert [await pipeline.deliver(i) for i in ids] == ["skipped"] * 20
    assert sim_report(sim)["requests"] == 0
    assert Store(client, ns).stats()[CAMPAIGN] == {"expired": 20}


async def test_the_hold_keeper_expires_held_texts_before_it_would_release_them(
    pipeline, aclient, client, ns, queue, sim
) -> None:
    ops(client, ns).pause(f"att:{CAMPAIGN}", who="maria", reason="complaints")
    ids = enqueue(client, ns, queue, "att", 3, send_before=soon(0.5))
    assert [await pipeline.deliver(i) for i in ids] == ["held"] * 3
    ops(client, ns).resume(f"att:{CAMPAIGN}", who="maria")
    await asyncio.sleep(max(0.0, (deadline_ms(client, ns, ids[0]) - now_ms()) / 1000) + 0.05)
    plain = parts.keeper(aclient, queue, ns)
    keeper = HoldKeeper(
        plain.holds,
        plain.breakers,
        plain.leases,
        plain.orphans,
        expiry=ExpirySweeper(aclient, ns=ns),
    )
    assert await keeper.tick() == 0
    assert statuses(client, ns, ids) == ["expired"] * 3
    assert [await pipeline.deliver(i) for i in ids] == ["skipped"] * 3
    assert sim_report(sim)["requests"] == 0


# -- throttled, deferred ------------------------------------------------------------------


async def test_a_throttled_text_past_its_deadline_ends_expired_when_its_message_comes(
    pipeline, client, ns, queue, sim
) -> None:
    scenario(sim, rules=[{"error_code": "20429", "mode": "sync"}])
    (msg_id,) = enqueue(client, ns, queue, "att", 1, send_before=soon())
    assert await pipeline.deliver(msg_id) == "retry"
    scenario(sim, rules=[])  # the provider would take it now
    expiring(pipeline, Clock(deadline_ms(client, ns, msg_id) + 1))
    assert await pipeline.deliver(msg_id) == "expired"
    assert last_why(client, ns, msg_id).startswith("past send_before ")
    assert sent_anything(sim) == NOTHING_SENT
    assert Store(client, ns).stats()[CAMPAIGN] == {"expired": 1}


async def test_a_throttled_text_waiting_past_its_deadline_is_swept_and_its_retry_skipped(
    pipeline, aclient, client, ns, queue, sim
) -> None:
    scenario(sim, rules=[{"error_code": "20429", "mode": "sync"}])
    (msg_id,) = enqueue(client, ns, queue, "att", 1, send_before=soon())
    assert await pipeline.deliver(msg_id) == "retry"
    scenario(sim, rules=[])
    assert await ExpirySweeper(aclient, ns=ns).sweep(deadline_ms(client, ns, msg_id) + 1) == 1
    assert await pipeline.deliver(msg_id) == "skipped"
    assert statuses(client, ns, [msg_id]) == ["expired"]
    assert sent_anything(sim) == NOTHING_SENT


@pytest.fixture
async def limited(pipeline: Pipeline, aclient: aioredis.Redis, ns: str) -> Pipeline:
    from worker.ratelimit import AsyncLimiter
    from worker.settings import LimitsSettings

    pipeline.config.limits = LimitsSettings(
        short_wait_ms=250,
        number_types={"slow": {"rate": 1}},
        numbers={"+12015550100": "slow", "+12015550101": "slow"},
        default_number_type="slow",
    )
    # One sending number: the second text waits for its slot.
    pipeline.config.numbers = {"twilio": ["+12015550100"]}
    pipeline.parts.limiter = AsyncLimiter(aclient, ns)
    return pipeline


async def test_a_deferred_text_past_its_deadline_ends_expired_at_its_slot(
    limited, client, ns, queue, sim
) -> None:
    first, second = enqueue(client, ns, queue, "att", 2, send_before=soon())
    assert await limited.deliver(first) == "sent"
    assert await limited.deliver(second) == "deferred"
    expiring(limited, Clock(deadline_ms(client, ns, second) + 1))
    assert await limited.deliver(second) == "expired"
    assert sim_report(sim)["requests"] == 1  # the first text only
    assert Store(client, ns).stats()[CAMPAIGN] == {"sent": 1, "expired": 1}


async def test_a_deferred_text_waiting_past_its_deadline_is_swept_and_never_sent(
    limited, aclient, client, ns, queue, sim
) -> None:
    first, second = enqueue(client, ns, queue, "att", 2, send_before=soon())
    await limited.deliver(first)
    assert await limited.deliver(second) == "deferred"
    assert await ExpirySweeper(aclient, ns=ns).sweep(deadline_ms(client, ns, second) + 1) == 1
    assert await limited.deliver(second) == "skipped"
    assert sim_report(sim)["requests"] == 1


# -- unconfirmed --------------------------------------------------------------------------


@pytest.mark.parametrize(("found", "policy"), [(NOT_FOUND, "fail"), (CANNOT_TELL, "resend")])
async def test_an_unconfirmed_text_past_its_deadline_ends_expired_instead_of_being_resent(
    aclient, client, ns, queue, sim, found: object, policy: str
) -> None:
    pipeline = pipeline_finding(aclient, ns, queue, sim, found, policy=policy)
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    # The operator closes the campaign while the text waits for evidence.
    pipeline.config.campaign_send_before_ms = {"default": now_ms() - 1000}
    assert await pipeline.deliver(msg_id) == "skipped"
    record = Store(client, ns).get(msg_id)
    assert record is not None and record["status"] == "expired"
    why = last_why(client, ns, msg_id)
    assert why.startswith("past its campaign's send_before ")
    assert why.endswith("the unconfirmed attempt was not sent again")
    assert "possible_double" not in record and record["settle_at_ms"] == ""
    assert "possible_doubles" not in Store(client, ns).counters()
    assert sim_report(sim)["requests"] == 1  # the first, ambiguous attempt only
    assert Store(client, ns).stats()["default"] == {"expired": 1}


async def test_an_unconfirmed_text_past_its_own_deadline_is_not_resent(
    aclient, client, ns, queue, sim
) -> None:
    pipeline = pipeline_finding(aclient, ns, queue, sim, NOT_FOUND)
    scenario(sim, rules=[{"error_code": "30008", "mode": "sync"}])
    msg_id = enqueue_one(client, ns, queue, send_before=soon(1.0))
    assert await pipeline.deliver(msg_id) == "unconfirmed"
    scenario(sim, rules=[])
    client.hset(keys.message(msg_id, ns), "settle_at_ms", 1)  # the wait is over
    await asyncio.sleep(max(0.0, (deadline_ms(client, ns, msg_id) - now_ms()) / 1000) + 0.05)
    assert await pipeline.deliver(msg_id) == "skipped"
    assert statuses(client, ns, [msg_id]) == ["expired"]
    assert last_why(client, ns, msg_id).startswith("past send_before ")
    assert sim_report(sim)["requests"] == 1


async def test_an_unconfirmed_text_not_sent_again_stays_as_the_policy_leaves_it(
    aclient, client, ns, queue, sim
) -> None:
    pipeline = pipeline_finding(aclient, ns, queue, sim, CANNOT_TELL, policy="fail")
    msg_id = await unconfirmed_then_due(pipeline, client, ns, queue, sim)
    pipeline.config.campaign_send_before_ms = {"default": now_ms() - 1000}
    assert await pipeline.deliver(msg_id) == "skipped"
    assert statuses(client, ns, [msg_id]) == ["unconfirmed"]


async def test_the_sweeper_leaves_an_unconfirmed_text_to_its_settling(
    aclient, client, ns, queue, sim
) -> None:
    pipeline = pipeline_finding(aclient, ns, queue, sim, NOT_FOUND)
    scenario(sim, rules=[{"error_code": "30008", "mode": "sync"}])
    msg_id = enqueue_one(client, ns, queue, send_before=soon())
    assert await pipeline.deliver(msg_id) == "unconfirmed"
    assert await ExpirySweeper(aclient, ns=ns).sweep(deadline_ms(client, ns, msg_id) + 1) == 0
    assert statuses(client, ns, [msg_id]) == ["unconfirmed"]
    assert client.zcard(keys.expiry(ns)) == 0


# -- the campaign's deadline --------------------------------------------------------------


async def test_a_campaign_deadline_applies_to_a_text_enqueued_before_it_was_set(
    pipeline, client, ns, queue, sim
) -> None:
    (msg_id,) = enqueue(client, ns, queue, "att", 1)
    closed = now_ms() - 1000
    expiring(pipeline).config.campaign_send_before_ms = {CAMPAIGN: closed}
    assert await pipeline.deliver(msg_id) == "expired"
    closed_at = datetime.fromtimestamp(closed // 1000, UTC)
    assert last_why(client, ns, msg_id) == (
        f"past its campaign's send_before {closed_at:%Y-%m-%dT%H:%M:%SZ}"
    )
    assert sim_report(sim)["requests"] == 0


def test_the_reason_names_the_deadline_that_passed() -> None:
    own, campaign = 1_796_241_600_000, 1_796_245_200_000  # 2026-12-02T20:00Z, 21:00Z
    record = {"campaign": "gotv", "send_before_ms": str(own)}
    assert past_send_before(record, {}, own - 1) is None
    assert past_send_before(record, {}, own + 1) == "past send_before 2026-12-02T20:00:00Z"
    # The campaign's is named when it is the earlier, or the record's is a copy of it.
    later = {"gotv": campaign}
    assert past_send_before(record, later, own + 1) == "past send_before 2026-12-02T20:00:00Z"
    earlier = {"gotv": own - 3_600_000}
    assert past_send_before(record, earlier, own - 1) == (
        "past its campaign's send_before 2026-12-02T19:00:00Z"
    )
    copied = {"gotv": own}
    assert past_send_before(record, copied, own + 1) == (
        "past its campaign's send_before 2026-12-02T20:00:00Z"
    )
    assert past_send_before({"campaign": "other"}, later, campaign + 1) is None


# -- the sweeper --------------------------------------------------------------------------


async def test_the_sweeper_takes_every_due_text_in_batches(aclient, client, ns, queue) -> None:
    ids = enqueue(client, ns, queue, "att", 7, send_before=soon())
    later = enqueue(client, ns, queue, "att", 1, send_before=soon(3600))
    past = max(deadline_ms(client, ns, i) for i in ids) + 1
    assert await ExpirySweeper(aclient, ns=ns, batch=3).sweep(past) == 7
    assert statuses(client, ns, ids + later) == ["expired"] * 7 + ["queued"]
    assert client.zrange(keys.expiry(ns), 0, -1) == [later[0].encode()]


async def test_a_text_sending_at_its_deadline_is_looked_at_again_and_expires_once_it_waits(
    aclient, client, ns, queue
) -> None:
    (msg_id,) = enqueue(client, ns, queue, "att", 1, send_before=soon())
    store = Store(client, ns)
    store.transition(msg_id, ["queued"], "sending", reason="claimed", fields={"lease_id": "w1"})
    sweeper = ExpirySweeper(aclient, ns=ns, recheck_ms=1000)
    past = deadline_ms(client, ns, msg_id) + 1
    assert await sweeper.sweep(past) == 0  # the send path's: its gate decides
    assert client.zscore(keys.expiry(ns), msg_id) == past + 1000
    # Its worker defers it: back to waiting, and the next look ends it.
    store.transition(msg_id, ["sending"], "queued", reason="rate limit", fence="w1")
    assert await sweeper.sweep(past + 1001) == 1
    assert statuses(client, ns, [msg_id]) == ["expired"]


def _calls(client: redis.Redis) -> int:
    """Commands the server has run, other than INFO itself."""
    stats: dict[str, Any] = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


async def test_a_sweep_with_nothing_due_is_one_command(aclient, client, ns) -> None:
    import os

    if os.environ.get("SENDQ_TEST_REDIS_URL"):
        pytest.skip("counts the server's commands: needs the suite's own server")
    sweeper = ExpirySweeper(aclient, ns=ns)
    await aclient.ping()  # the connection's own handshake is not the sweep's
    before = _calls(client)
    assert await sweeper.sweep(now_ms()) == 0
    assert _calls(client) - before == 1
