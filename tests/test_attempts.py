"""Promise 2 at the send path: every attempt is on the record, and only a provable
"not sent" is retried or failed over. Each test is a reproduction from the review
(issue 12): a real server on loopback that drops the connection or answers late,
a real Redis, the simulator as the second provider.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from tests import parts
from tests.conftest import AUTH_TOKEN
from tests.test_delivery import SID, enqueue, report, scenario
from worker import wire
from worker.breaker import AsyncBreakers, Policy
from worker.providers.twilio import TwilioProvider
from worker.ratelimit import AsyncLimiter
from worker.retry import Backoff
from worker.sendpath import Pipeline, PipelineConfig
from worker.settings import LimitsSettings, RateSettings
from worker.store import Store


@dataclass
class Misbehaving:
    """An HTTP server that reads each whole request, then drops it or answers late."""

    answer_after_s: float | None = None  # None: close the connection unanswered
    raw: bytes | None = None  # answer these bytes instead of a valid HTTP answer
    trickle_s: float | None = None  # send ``raw`` a byte at a time, this far apart
    requests: int = 0
    port: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        await reader.readexactly(length)
        self.requests += 1
        if self.raw is not None:
            await self._answer_raw(writer)
            return
        if self.answer_after_s is None:
            writer.transport.abort()  # read it all, then a reset: no answer ever comes
            return
        await asyncio.sleep(self.answer_after_s)
        body = b'{"sid": "SMlate", "status": "queued"}'
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _answer_raw(self, writer: asyncio.StreamWriter) -> None:
        assert self.raw is not None
        with contextlib.suppress(ConnectionError):
            for i in range(len(self.raw)) if self.trickle_s else [None]:
                writer.write(self.raw if i is None else self.raw[i : i + 1])
                await writer.drain()
                if self.trickle_s:
                    await asyncio.sleep(self.trickle_s)
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def misbehaving(
    answer_after_s: float | None = None, raw: bytes | None = None, trickle_s: float | None = None
) -> AsyncIterator[Misbehaving]:
    server = Misbehaving(answer_after_s, raw, trickle_s)
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()


def two_provider_pipeline(
    aclient: aioredis.Redis,
    ns: str,
    queue: str,
    first_url: str,
    sim: str,
    *,
    timeout_s: float = 2.0,
    lease_ms: int = 60_000,
) -> Pipeline:
    """Twilio at ``first_url``, failing over to the simulator's Twilio as "backup"."""
    config = PipelineConfig(
        queue=queue,
        public_url="http://127.0.0.1:9",
        routes={"default": ["twilio", "backup"]},
        numbers={"twilio": ["+12015550100"], "backup": ["+12015550101"]},
        max_attempts=3,
        backoff=Backoff(base_ms=1000, cap_ms=10_000),
        lease_ms=lease_ms,
    )
    providers = {
        "twilio": TwilioProvider(
            account_sid=SID, auth_token=AUTH_TOKEN, base_url=first_url, timeout_s=timeout_s
        ),
        "backup": TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim),
    }
    breakers = AsyncBreakers(aclient, "provider", Policy(consecutive=100, min_calls=1000), ns)
    return parts.pipeline(config, aclient, ns, providers, breakers, sleep=asyncio.sleep)


def record(client: redis.Redis, ns: str, msg_id: str) -> dict[str, str]:
    found = Store(client, ns).get(msg_id)
    assert found is not None
    return found


async def test_a_connection_dropped_after_the_request_was_written_is_unconfirmed_not_resent(
    aclient, client, ns, queue, sim
) -> None:
    async with misbehaving(answer_after_s=None) as dropper:
        pipeline = two_provider_pipeline(aclient, ns, queue, dropper.url, sim)
        msg_id = enqueue(client, ns, queue)
        assert await pipeline.deliver(msg_id) == "unconfirmed"
    rec = record(client, ns, msg_id)
    assert dropper.requests == 1  # no quick retry
    assert report(sim)["requests"] == 0  # no failover
    assert (rec["status"], rec["error_code"]) == ("unconfirmed", "ProviderUncertain")
    assert (rec["attempt"], rec["a1:provider"], rec["a1:outcome"]) == ("1", "twilio", "uncertain")


async def test_a_timeout_after_writing_is_unconfirmed_not_retried_on_the_same_provider(
    aclient, client, ns, queue, sim
) -> None:
    async with misbehaving(answer_after_s=3.0) as slow:
        pipeline = two_provider_pipeline(aclient, ns, queue, slow.url, sim, timeout_s=0.5)
        msg_id = enqueue(client, ns, queue)
        assert await pipeline.deliver(msg_id) == "unconfirmed"
        assert slow.requests == 1
    assert report(sim)["requests"] == 0
    assert record(client, ns, msg_id)["error_code"] == "ProviderTimeout"
    assert "failovers_after_timeout" not in Store(client, ns).counters()


async def test_a_refused_connection_is_provably_unsent_and_fails_over(
    aclient, client, ns, queue, sim
) -> None:
    async with misbehaving() as gone:
        url = gone.url
    pipeline = two_provider_pipeline(aclient, ns, queue, url, sim)  # nothing listens there now
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "sent"
    rec = record(client, ns, msg_id)
    assert rec["provider"] == "backup" and report(sim)["requests"] == 1
    # Three quick attempts at the dead port, each on the record, then the backup.
    assert rec["attempt"] == "4" and rec["a4:provider"] == "backup"


async def test_a_send_slower_than_the_lease_keeps_it_and_nobody_takes_it_over(
    aclient, client, ns, queue, sim
) -> None:
    async with misbehaving(answer_after_s=4.0) as slow:
        a = two_provider_pipeline(aclient, ns, queue, slow.url, sim, timeout_s=3, lease_ms=2000)
        b = two_provider_pipeline(aclient, ns, queue, sim, sim, lease_ms=2000)
        msg_id = enqueue(client, ns, queue)
        first = asyncio.create_task(a.deliver(msg_id))
        await asyncio.sleep(2.5)  # past the lease A took at its claim
        assert await b.deliver(msg_id) == "skipped"  # A renewed it: B waits
        assert await first == "unconfirmed"
        assert slow.requests == 1
    assert report(sim)["requests"] == 0
    counters = Store(client, ns).counters()
    assert "takeovers" not in counters and "crash_resends" not in counters


async def test_a_stale_workers_result_changes_nothing_and_is_kept_as_evidence(
    client, ns, queue
) -> None:
    msg_id = enqueue(client, ns, queue)
    store = Store(client, ns)
    store.transition(msg_id, ["queued"], "sending", reason="claimed", fields={"lease_id": "B"})
    late = store.transition(msg_id, ["sending"], "queued", reason="retry in 1000 ms", fence="A")
    assert not late.ok and late.stale
    assert record(client, ns, msg_id)["status"] == "sending"
    assert "late result of an expired lease (A)" in store.history(msg_id)[-1]["why"]


async def test_each_quick_retry_takes_a_rate_limit_slot_of_its_own(
    aclient, client, ns, queue, sim
) -> None:
    scenario(sim, rules=[{"http_status": 503}])
    pipeline = two_provider_pipeline(aclient, ns, queue, sim, sim)
    pipeline.config.routes = {"default": ["twilio"]}
    pipeline.config.limits = LimitsSettings(numbers={"+12015550100": RateSettings(rate=1)})
    pipeline.parts.limiter = AsyncLimiter(aclient, ns)
    msg_id = enqueue(client, ns, queue)
    # The first attempt took this second's slot; the quick retry's is a second away,
    # too far to sleep for: the text waits for it on the timed queue.
    assert await pipeline.deliver(msg_id) == "deferred"
    assert report(sim)["requests"] == 1
    assert client.llen(wire.queue_key(wire.delay_queue(wire.timed_queue(queue)))) == 1


@pytest.mark.parametrize("waiting", ["held", "queued"])
async def test_a_receipt_proves_a_waiting_text_sent_and_it_is_never_sent_again(
    aclient, client, redis_url, ns, queue, sim, waiting: str
) -> None:
    from tests.test_webhooks import post, sending

    pipeline = two_provider_pipeline(aclient, ns, queue, sim, sim)
    msg_id = sending(client, ns, queue)  # attempt 1 via twilio is on the record
    Store(client, ns).transition(msg_id, ["sending"], waiting, reason="a retry, or a hold")
    hooks = webhook_client(redis_url, ns)
    assert post(hooks, msg_id, "delivered", attempt=1).status_code == 200
    assert record(client, ns, msg_id)["status"] == "delivered"
    assert await pipeline.deliver(msg_id) == "skipped"  # its queued message comes: nothing
    assert report(sim)["requests"] == 0


def webhook_client(redis_url: str, ns: str) -> httpx.Client:
    from starlette.testclient import TestClient

    from tests.test_webhooks import PUBLIC, TOKEN
    from worker.store import AsyncStore
    from worker.webhooks import create_app

    provider = TwilioProvider(account_sid=SID, auth_token=TOKEN, base_url="http://127.0.0.1:9")
    # A client of the app's own: the test client runs the app on a loop of its own.
    aclient = aioredis.Redis.from_url(redis_url)
    app = create_app(
        store=AsyncStore(aclient, ns),
        providers={"twilio": provider},
        public_url=PUBLIC,
        feed=parts.feed(aclient, ns),
    )
    return TestClient(app, base_url=PUBLIC)


async def test_a_receipt_that_beats_the_workers_write_feeds_the_carriers_breaker(
    client, redis_url, ns, queue
) -> None:
    from tests.test_webhooks import post, sending
    from worker.breaker import Breakers

    msg_id = sending(client, ns, queue)
    # What the ledger wrote before the HTTP call: the carrier is on the record already.
    client.hset(f"{ns}:msg:{msg_id}", mapping={"carrier": "tmobile", "campaign": "gotv"})
    hooks = webhook_client(redis_url, ns)
    assert post(hooks, msg_id, "undelivered", code="30007", attempt=1).status_code == 200
    breakers = Breakers(client, "carrier", Policy(), ns)
    assert breakers.status("tmobile:gotv")["window_failures"] == 1
    assert breakers.status("unknown:gotv")["window_calls"] == 0


async def test_a_receipt_naming_an_attempt_the_text_never_had_is_refused(
    client, redis_url, ns, queue
) -> None:
    from tests.test_webhooks import post, sending

    msg_id = sending(client, ns, queue)  # one attempt, via twilio
    hooks = webhook_client(redis_url, ns)
    refused = post(hooks, msg_id, "delivered", attempt=2)
    assert refused.status_code == 403
    assert "no attempt" in refused.json()["error"]
    assert record(client, ns, msg_id)["status"] == "sending"


async def test_a_receipt_through_another_provider_than_the_attempts_is_refused(
    client, redis_url, ns, queue
) -> None:
    from tests.test_webhooks import post, sending

    msg_id = sending(client, ns, queue, "bandwidth")  # its attempt went to Bandwidth
    hooks = webhook_client(redis_url, ns)
    refused = post(hooks, msg_id, "delivered", attempt=1)  # a validly signed Twilio receipt
    assert refused.status_code == 403
    assert "not sent through twilio" in refused.json()["error"]
    assert record(client, ns, msg_id)["status"] == "sending"


class CountingLimiter(AsyncLimiter):
    """The real limiter, counting how often it is asked."""

    asked = 0

    async def reserve(self, *args: object, **kw: object):  # type: ignore[no-untyped-def, override]
        CountingLimiter.asked += 1
        return await super().reserve(*args, **kw)  # type: ignore[arg-type]


async def test_a_text_that_would_leave_late_after_its_slot_takes_a_fresh_one(
    aclient, client, ns, queue, sim
) -> None:
    pipeline = two_provider_pipeline(aclient, ns, queue, sim, sim)
    pipeline.config.routes = {"default": ["twilio"]}
    # 2 a second: the second text waits about half a second, slept in the worker.
    pipeline.config.limits = LimitsSettings(
        numbers={"+12015550100": RateSettings(rate=2)}, arrival_margin_ms=30, short_wait_ms=1000
    )
    pipeline.parts.limiter = CountingLimiter(aclient, ns)
    CountingLimiter.asked = 0
    overruns_s = [0.2]

    async def starved(wait_s: float) -> None:
        # The first wait overruns by 200 ms, as on a core another process took.
        await asyncio.sleep(wait_s + (overruns_s.pop() if overruns_s else 0.0))

    pipeline.parts.sleep = starved
    first, second = enqueue(client, ns, queue), enqueue(client, ns, queue, body="second")
    assert await pipeline.deliver(first) == "sent"  # takes the slot now: no wait
    assert await pipeline.deliver(second) == "sent"  # waits, and wakes 200 ms late
    assert CountingLimiter.asked == 3  # the late one asked for a fresh slot
    assert report(sim)["requests"] == 2


async def test_a_receipt_naming_attempt_zero_is_matched_like_one_naming_none(
    client, redis_url, ns, queue
) -> None:
    from tests.test_webhooks import post, sending

    msg_id = sending(client, ns, queue, "bandwidth")  # its one attempt went to Bandwidth
    hooks = webhook_client(redis_url, ns)
    refused = post(hooks, msg_id, "undelivered", code="30007", attempt=0)  # a Twilio receipt
    assert refused.status_code == 403
    assert record(client, ns, msg_id)["status"] == "sending"


async def test_a_receipt_proving_an_earlier_attempt_went_out_counts_the_double(
    client, redis_url, ns, queue
) -> None:
    from tests.test_webhooks import post, sending
    from worker.sendpath.ledger import attempt_fields

    msg_id = sending(client, ns, queue)  # attempt 1 via twilio: it timed out, say
    client.hset(f"{ns}:msg:{msg_id}", mapping=attempt_fields(2, "twilio", "+12015550100", 2))
    with webhook_client(redis_url, ns) as hooks:
        assert post(hooks, msg_id, "delivered", attempt=1).status_code == 200
        rec = record(client, ns, msg_id)
        assert (rec["possible_double"], rec["double_evidence"]) == ("1", "1")
        assert Store(client, ns).counters()["doubles_evidenced"] == 1
        # The same receipt again counts nothing more.
        post(hooks, msg_id, "delivered", attempt=1)
    assert Store(client, ns).counters()["doubles_evidenced"] == 1


CORRUPT_GZIP = (
    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
    b"Content-Length: 12\r\n\r\nnot gzip :-("
)
TRICKLED = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "trickle_s"),
    [
        (CORRUPT_GZIP, None),  # a 2xx whose body cannot be decoded
        (b"220 smtp.example.org ESMTP ready\r\n", None),  # not HTTP at all
        (TRICKLED + b" " * 400, 0.3),  # an answer that never finishes in time
    ],
    ids=["undecodable 2xx", "not http", "trickled"],
)
async def test_an_answer_that_cannot_be_used_leaves_the_text_unconfirmed_not_resent(
    aclient, client, ns, queue, sim, raw: bytes, trickle_s: float | None
) -> None:
    async with misbehaving(raw=raw, trickle_s=trickle_s) as odd:
        pipeline = two_provider_pipeline(aclient, ns, queue, odd.url, sim, timeout_s=1)
        msg_id = enqueue(client, ns, queue)
        assert await asyncio.wait_for(pipeline.deliver(msg_id), 20) == "unconfirmed"
        assert odd.requests == 1  # never quick-retried
    assert report(sim)["requests"] == 0  # never failed over
    assert record(client, ns, msg_id)["status"] == "unconfirmed"


async def test_a_duplicate_message_ahead_of_a_retrys_time_sends_nothing(
    aclient, client, ns, queue, sim
) -> None:
    scenario(sim, rules=[{"http_status": 500}])
    pipeline = two_provider_pipeline(aclient, ns, queue, sim, sim)
    pipeline.config.routes = {"default": ["twilio"]}
    pipeline.config.backoff = Backoff(base_ms=30_000, cap_ms=60_000)
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "retry"  # again in 15 to 30 s
    sent = report(sim)["requests"]
    assert await pipeline.deliver(msg_id) == "skipped"  # a duplicate message, at once
    assert report(sim)["requests"] == sent
    assert record(client, ns, msg_id)["status"] == "queued"


async def test_an_attempt_that_sent_nothing_is_closed_before_the_retry_pause(
    aclient, client, ns, queue, sim
) -> None:
    async with misbehaving() as gone:
        url = gone.url
    pipeline = two_provider_pipeline(aclient, ns, queue, url, sim)
    seen: list[str] = []

    async def look(_: float) -> None:
        # What a worker lost during the quick-retry pause would leave behind.
        seen.append(record(client, ns, msg_id).get("attempt_open", ""))

    pipeline.parts.sleep = look
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "sent"
    assert seen and set(seen) == {""}


async def test_a_text_put_back_as_early_still_has_a_message_coming_at_its_time(
    aclient, client, ns, queue, sim
) -> None:
    # The early message may have been the text's own, read on a clock behind the
    # one that set its time: the text must not wait for the orphan sweep.
    scenario(sim, rules=[{"http_status": 500}])
    pipeline = two_provider_pipeline(aclient, ns, queue, sim, sim)
    pipeline.config.routes = {"default": ["twilio"]}
    pipeline.config.backoff = Backoff(base_ms=30_000, cap_ms=60_000)
    msg_id = enqueue(client, ns, queue)
    assert await pipeline.deliver(msg_id) == "retry"
    eta_ms = int(record(client, ns, msg_id)["eta_ms"])
    timed = wire.queue_key(wire.delay_queue(wire.timed_queue(queue)))
    assert await pipeline.deliver(msg_id) == "skipped"
    assert client.llen(timed) == 1
    # Due when it was due (to the millisecond the two clock readings allow).
    assert abs(int(record(client, ns, msg_id)["eta_ms"]) - eta_ms) <= 5
