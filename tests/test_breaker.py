"""Breakers shared in Redis: every transition, as workers and operators see it."""

from __future__ import annotations

import asyncio
import dataclasses
from unittest import mock

import redis
import redis.asyncio as aioredis

from worker import breaker as breaker_mod
from worker import keys
from worker.breaker import FAILURE_WEIGHT, SUCCESS_WEIGHT, AsyncBreakers, Breakers, Policy, State

POLICY = Policy(
    window_s=10,
    min_calls=10,
    failure_rate=0.5,
    consecutive=4,
    cooldown_s=0.2,
    cooldown_max_s=1.0,
    probes=2,
)


class Clock:
    """The breaker reads time through store.now_ms; tests move it by hand."""

    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


def breakers(
    aclient: aioredis.Redis, client: redis.Redis, ns: str
) -> tuple[AsyncBreakers, Breakers]:
    return (
        AsyncBreakers(aclient, "provider", POLICY, ns, cache_ms=0),
        Breakers(client, "provider", POLICY, ns),
    )


async def fail(b: AsyncBreakers, n: int, name: str = "p") -> None:
    for _ in range(n):
        await b.record(name, FAILURE_WEIGHT, "503")


async def test_consecutive_failures_open_the_breaker(aclient, client, ns) -> None:
    b, ops = breakers(aclient, client, ns)
    await fail(b, 3)
    assert (await b.admit("p")).allowed
    await fail(b, 1)
    decision = await b.admit("p")
    assert (decision.allowed, decision.state) == (False, State.OPEN)
    assert "4 failures in a row" in ops.status("p")["why"]


async def test_a_failure_rate_over_the_window_opens_it(aclient, client, ns) -> None:
    b, _ = breakers(aclient, client, ns)
    for i in range(10):
        await b.record("p", FAILURE_WEIGHT if i % 2 else SUCCESS_WEIGHT, "500")
    assert (await b.admit("p")).state is State.OPEN


async def test_too_few_calls_never_open_on_rate(aclient, client, ns) -> None:
    b, _ = breakers(aclient, client, ns)
    for i in range(9):
        await b.record("p", FAILURE_WEIGHT if i % 3 else SUCCESS_WEIGHT, "500")
    assert (await b.admit("p")).state is State.CLOSED


async def test_ambiguous_results_count_at_their_weight(aclient, client, ns) -> None:
    b, _ = breakers(aclient, client, ns)
    for _ in range(10):
        await b.record("p", 400, "30008")  # 40% of a failure each: under the 50% threshold
    assert (await b.admit("p")).state is State.CLOSED
    for _ in range(10):
        await b.record("p", 600, "30008")  # now 50% on average
    assert (await b.admit("p")).state is State.OPEN


async def test_after_the_cooldown_probes_go_and_success_closes(aclient, client, ns) -> None:
    clock = Clock()
    with mock.patch.object(breaker_mod, "now_ms", clock):
        b, ops = breakers(aclient, client, ns)
        await fail(b, 4)
        assert not (await b.admit("p")).allowed
        clock.ms += 250
        first, second, third = [await b.admit("p") for _ in range(3)]
        assert (first.allowed, first.state, first.transition) == (
            True,
            State.HALF_OPEN,
            "open>half_open",
        )
        assert second.allowed and not third.allowed  # only `probes` go at once
        await b.record("p", SUCCESS_WEIGHT)
        closed = await b.record("p", SUCCESS_WEIGHT)
        assert (closed.state, closed.transition) == (State.CLOSED, "half_open>closed")
        assert ops.status("p")["window_calls"] == 0


async def test_a_failed_probe_reopens_for_longer_each_time(aclient, client, ns) -> None:
    clock = Clock()
    with mock.patch.object(breaker_mod, "now_ms", clock):
        b, _ = breakers(aclient, client, ns)
        await fail(b, 4)
        cooldowns = []
        for _ in range(4):
            clock.ms += 2000
            assert (await b.admit("p")).allowed
            reopened = await b.record("p", FAILURE_WEIGHT, "503")
            cooldowns.append(reopened.retry_at_ms - clock.ms)
        assert cooldowns == [400, 800, 1000, 1000]  # doubles, capped at cooldown_max_s


async def test_a_manual_pause_is_never_lifted_automatically(aclient, client, ns) -> None:
    clock = Clock()
    with mock.patch.object(breaker_mod, "now_ms", clock):
        b, ops = breakers(aclient, client, ns)
        ops.pause("p", who="maria", reason="carrier complaint")
        for _ in range(20):
            await b.record("p", SUCCESS_WEIGHT)
        clock.ms += 3_600_000
        assert (await b.admit("p")).state is State.PAUSED
        assert not (await b.admit("p")).allowed
        resumed = ops.resume("p", who="maria")
        assert resumed.state is State.CLOSED and (await b.admit("p")).allowed


async def test_every_transition_is_audited_with_who_and_why(aclient, client, ns) -> None:
    b, ops = breakers(aclient, client, ns)
    await fail(b, 4)
    ops.pause("p", who="maria", reason="investigating")
    ops.resume("p", who="sam", reason="carrier confirmed fix")
    history = ops.history("p")
    assert [(h["from"], h["to"], h["who"]) for h in history] == [
        ("paused", "closed", "sam"),
        ("open", "paused", "maria"),
        ("closed", "open", "auto"),
    ]
    assert history[0]["why"] == "carrier confirmed fix"
    assert "failures in a row" in history[2]["why"]
    assert ops.names() == ["p"]


async def test_many_workers_recording_at_once_open_it_exactly_once(aclient, client, ns) -> None:
    b, ops = breakers(aclient, client, ns)
    results = await asyncio.gather(*(b.record("p", FAILURE_WEIGHT, "503") for _ in range(40)))
    assert sum(1 for r in results if r.transition == "closed>open") == 1
    assert len(ops.history("p")) == 1


async def test_breakers_are_independent_by_name(aclient, client, ns) -> None:
    b, _ = breakers(aclient, client, ns)
    await fail(b, 4, "twilio")
    assert not (await b.admit("twilio")).allowed
    assert (await b.admit("telnyx")).allowed


async def test_a_worker_trusts_a_closed_answer_only_for_its_cache_time(aclient, client, ns) -> None:
    clock = Clock()
    with mock.patch.object(breaker_mod, "now_ms", clock):
        worker = AsyncBreakers(aclient, "provider", POLICY, ns, cache_ms=200)
        ops = Breakers(client, "provider", POLICY, ns)
        assert (await worker.admit("p")).allowed
        ops.pause("p", who="maria", reason="stop now")
        assert (await worker.admit("p")).allowed  # still within the cache time
        clock.ms += 201
        assert not (await worker.admit("p")).allowed


async def test_successes_are_written_in_batches_and_failures_at_once(aclient, client, ns) -> None:
    clock = Clock()
    with mock.patch.object(breaker_mod, "now_ms", clock):
        worker = AsyncBreakers(aclient, "provider", POLICY, ns, cache_ms=200)
        ops = Breakers(client, "provider", POLICY, ns)
        await worker.admit("p")
        for _ in range(5):
            await worker.record("p", SUCCESS_WEIGHT)
        assert ops.status("p")["window_calls"] == 0
        await worker.record("p", FAILURE_WEIGHT, "503")
        status = ops.status("p")
        assert (status["window_calls"], status["window_failures"]) == (6, 1.0)


SILENT_POLICY = dataclasses.replace(POLICY, probe_timeout_s=1.0)


async def half_open_with_probes_out(clock: Clock, b: AsyncBreakers) -> None:
    await fail(b, 4)
    clock.ms += 250
    assert [(await b.admit("p")).allowed for _ in range(3)] == [True, True, False]


async def test_a_half_open_breaker_whose_probes_never_report_lets_new_probes_go_after_probe_timeout(
    aclient, client, ns
) -> None:
    clock = Clock()
    with mock.patch.object(breaker_mod, "now_ms", clock):
        b = AsyncBreakers(aclient, "provider", SILENT_POLICY, ns, cache_ms=0)
        await half_open_with_probes_out(clock, b)
        clock.ms += 999
        assert not (await b.admit("p")).allowed  # the probes may still report
        clock.ms += 1
        again = [await b.admit("p") for _ in range(3)]
        assert [(d.allowed, d.state) for d in again] == [
            (True, State.HALF_OPEN),
            (True, State.HALF_OPEN),
            (False, State.HALF_OPEN),
        ]
        assert all(d.transition == "" for d in again)  # a new round is no transition


async def test_silent_probes_are_not_counted_as_failures(aclient, client, ns) -> None:
    clock = Clock()
    with mock.patch.object(breaker_mod, "now_ms", clock):
        b = AsyncBreakers(aclient, "provider", SILENT_POLICY, ns, cache_ms=0)
        ops = Breakers(client, "provider", SILENT_POLICY, ns)
        await half_open_with_probes_out(clock, b)
        before = ops.status("p")
        for _ in range(3):  # three rounds whose probes all go silent
            clock.ms += 1000
            assert (await b.admit("p")).allowed
            assert (await b.admit("p")).allowed
        after = ops.status("p")
        assert after["state"] == "half_open"
        assert (after["consecutive"], after["reopens"]) == (
            before["consecutive"],
            before["reopens"],
        )
        assert after["window_failures"] == before["window_failures"]
        assert [h["to"] for h in ops.history("p")] == ["half_open", "open"]
        # Probes of the latest round that do report still close it.
        await b.record("p", SUCCESS_WEIGHT)
        closed = await b.record("p", SUCCESS_WEIGHT)
        assert closed.transition == "half_open>closed"


async def test_hold_keeper_may_claim_probes_once_per_round(aclient, client, ns) -> None:
    clock = Clock()
    with mock.patch.object(breaker_mod, "now_ms", clock):
        b = AsyncBreakers(aclient, "carrier", SILENT_POLICY, ns, cache_ms=0)
        await fail(b, 4, "att:gotv")
        assert await b.claim_probes("att:gotv") == 0  # still cooling down
        clock.ms += 250
        assert [await b.claim_probes("att:gotv") for _ in range(2)] == [2, 0]
        # The claimed texts arrive and become the probes: still nothing to claim.
        assert (await b.admit("att:gotv")).state is State.HALF_OPEN
        assert await b.claim_probes("att:gotv") == 0
        assert (await b.admit("att:gotv")).allowed
        clock.ms += 1000  # they never report
        assert [await b.claim_probes("att:gotv") for _ in range(2)] == [2, 0]
        clock.ms += 1000  # and the texts released for the new round never came
        assert await b.claim_probes("att:gotv") == 2


async def test_hold_keeper_may_claim_the_probes_new_traffic_left(aclient, client, ns) -> None:
    clock = Clock()
    with mock.patch.object(breaker_mod, "now_ms", clock):
        b = AsyncBreakers(aclient, "carrier", SILENT_POLICY, ns, cache_ms=0)
        await fail(b, 4, "att:gotv")
        clock.ms += 250
        assert (await b.admit("att:gotv")).allowed  # a new text, not a held one, probes
        assert [await b.claim_probes("att:gotv") for _ in range(2)] == [1, 0]


async def test_a_wide_breaker_open_in_its_cool_down_admits_nothing_under_it(
    aclient, client, ns
) -> None:
    clock = Clock()
    with mock.patch.object(breaker_mod, "now_ms", clock):
        b = AsyncBreakers(aclient, "carrier", SILENT_POLICY, ns, cache_ms=0)
        await fail(b, 4, "att:*")
        assert (await b.admit("att:gotv", wider="att:*")).state is State.OPEN
        clock.ms += 250
        assert (await b.admit("att:gotv", wider="att:*")).allowed


async def test_an_automatic_open_says_which_codes_tripped_it(aclient, client, ns) -> None:
    b, ops = breakers(aclient, client, ns)
    await b.record("p", 400, "30008")  # ambiguous: counts by code, does not break the run
    for code in ("30007", "30007", "30008", "30007"):
        await b.record("p", FAILURE_WEIGHT, code)
    why = ops.history("p")[0]["why"]
    assert why == "4 failures in a row, last 30007; codes=30007:3,30008:2"
    assert ops.status("p")["window_failures"] == 4.4  # the codes are no extra failures


async def test_a_resume_is_remembered_and_a_later_close_by_probes_keeps_it(
    aclient, client, ns
) -> None:
    """The watch tells an operator's resume from the probes' close by resumed_ms."""
    clock = Clock()
    with mock.patch.object(breaker_mod, "now_ms", clock):
        b, ops = breakers(aclient, client, ns)
        ops.pause("p", who="maria", reason="checking")
        clock.ms += 1000
        ops.resume("p", who="maria")
        resumed_ms = clock.ms
        assert await b.state_since("p") == (State.CLOSED, resumed_ms, resumed_ms)
        await fail(b, 4)
        clock.ms += 1000
        for _ in range(POLICY.probes):
            assert (await b.admit("p")).allowed
        for _ in range(POLICY.probes):
            await b.record("p", SUCCESS_WEIGHT)
        assert await b.state_since("p") == (State.CLOSED, clock.ms, resumed_ms)
        assert (ops.status("p")["by"], ops.status("p")["resumed_ms"]) == ("auto", resumed_ms)


async def test_a_resume_by_an_older_version_without_resumed_ms_still_reads_as_a_resume(
    aclient, client, ns
) -> None:
    b, ops = breakers(aclient, client, ns)
    ops.pause("p", who="maria", reason="checking")
    ops.resume("p", who="maria")
    await aclient.hdel(keys.breaker("provider", "p", ns), "resumed_ms")  # what it left
    state, since_ms, resumed_ms = await b.state_since("p")
    assert (state, resumed_ms) == (State.CLOSED, since_ms)
    assert ops.status("p")["resumed_ms"] == since_ms
