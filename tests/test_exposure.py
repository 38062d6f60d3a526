"""The exposure limit's state: slots per carrier x campaign, and the adaptive cap."""

from __future__ import annotations

import asyncio
import re

import pytest
import redis
import redis.asyncio as aioredis
from pydantic import ValidationError

from worker import keys
from worker.exposure import (
    AsyncExposure,
    Exposure,
    ExposurePolicy,
    Release,
    answer_release,
    policy_from_settings,
    receipt_release,
)
from worker.exposure_settings import ExposureSettings
from worker.models import Category
from worker.store import now_ms

NAME = "verizon:gotv"
# The tests' own clock; calls that take none use the server's, a little later.
T0 = now_ms()
FIXED = ExposurePolicy(max_unconfirmed=25)
ADAPTIVE = ExposurePolicy(max_unconfirmed=100, adaptive=True, start=4, stale_after_ms=60_000)


def limit(aclient: aioredis.Redis, ns: str, policy: ExposurePolicy = FIXED) -> AsyncExposure:
    return AsyncExposure(aclient, policy, ns)


async def take(exposure: AsyncExposure, ids: list[str], now_ms: int = T0) -> list[bool]:
    return [bool(await exposure.acquire(NAME, i, now_ms)) for i in ids]


async def settle(
    exposure: AsyncExposure, ids: list[str], outcome: Release, now_ms: int = T0
) -> None:
    for i in ids:
        assert await exposure.release(NAME, i, outcome, now_ms)


async def test_many_concurrent_acquires_never_take_more_than_the_cap(aclient, ns) -> None:
    exposure = limit(aclient, ns)
    # As many at once as the client's pool has connections (100): all in flight together.
    ids = [f"m{i}" for i in range(aclient.connection_pool.max_connections)]
    answers = await asyncio.gather(*(exposure.acquire(NAME, i, T0) for i in ids))
    assert sum(1 for a in answers if a) == 25
    assert (await exposure.status(NAME)).outstanding == 25
    refused = next(a for a in answers if not a)
    assert (refused.outstanding, refused.cap) == (25, 25)


async def test_a_retried_text_never_takes_a_second_slot(aclient, ns) -> None:
    exposure = limit(aclient, ns, ExposurePolicy(max_unconfirmed=2))
    answers = await asyncio.gather(*(exposure.acquire(NAME, "m1", T0) for _ in range(20)))
    assert all(answers)
    assert (await exposure.status(NAME)).outstanding == 1
    assert await take(exposure, ["m2", "m3", "m1"]) == [True, False, True]


async def test_a_slot_given_back_twice_is_given_back_once(aclient, ns) -> None:
    exposure = limit(aclient, ns, ADAPTIVE)
    await take(exposure, ["m1", "m2"])
    assert await exposure.release(NAME, "m1", Release.DELIVERED)
    # A duplicate receipt: no slot, and no second growth.
    assert not await exposure.release(NAME, "m1", Release.DELIVERED)
    status = await exposure.status(NAME)
    assert (status.outstanding, status.cap) == (1, 5)


async def test_texts_of_other_carriers_and_campaigns_have_slots_of_their_own(aclient, ns) -> None:
    exposure = limit(aclient, ns, ExposurePolicy(max_unconfirmed=1))
    assert await exposure.acquire("verizon:gotv", "m1")
    assert await exposure.acquire("att:gotv", "m2")
    assert await exposure.acquire("verizon:census", "m3")
    assert not await exposure.acquire("verizon:gotv", "m4")
    assert await exposure.names() == ["att:gotv", "verizon:census", "verizon:gotv"]


async def test_the_adaptive_cap_starts_small_and_doubles_per_round_of_deliveries(
    aclient, ns
) -> None:
    exposure = limit(aclient, ns, ADAPTIVE)
    first = [f"a{i}" for i in range(6)]
    assert await take(exposure, first) == [True] * 4 + [False] * 2
    await settle(exposure, first[:4], Release.DELIVERED)
    assert (await exposure.status(NAME)).cap == 8
    second = [f"b{i}" for i in range(8)]
    assert await take(exposure, second, T0 + 1) == [True] * 8
    await settle(exposure, second, Release.DELIVERED)
    assert (await exposure.status(NAME)).cap == 16


async def test_the_cap_never_grows_past_max_unconfirmed(aclient, ns) -> None:
    exposure = limit(aclient, ns, ExposurePolicy(max_unconfirmed=6, adaptive=True, start=4))
    for round_ in range(4):
        ids = [f"r{round_}-{i}" for i in range(8)]
        answers = await take(exposure, ids, T0 + round_)
        taken = [i for i, ok in zip(ids, answers, strict=True) if ok]
        await settle(exposure, taken, Release.DELIVERED)
    assert (await exposure.status(NAME)).cap == 6


async def test_a_rejection_halves_the_cap_once_per_round(aclient, ns) -> None:
    exposure = limit(aclient, ns, ExposurePolicy(max_unconfirmed=100, adaptive=True, start=16))
    round_one = [f"a{i}" for i in range(16)]
    assert all(await take(exposure, round_one, T0))
    # A burst of late rejections of texts of one round: one halving, not sixteen.
    await settle(exposure, round_one[:10], Release.REJECTED)
    assert (await exposure.status(NAME)).cap == 8
    # A text taken after that shrink is of a new round: its loss halves again.
    assert await exposure.acquire(NAME, "b0", T0 + 10)
    await settle(exposure, ["b0"], Release.REJECTED)
    assert (await exposure.status(NAME)).cap == 4


async def test_an_overdue_receipt_shrinks_the_cap_as_a_rejection_does(aclient, ns) -> None:
    exposure = limit(aclient, ns, ExposurePolicy(max_unconfirmed=100, adaptive=True, start=10))
    assert await exposure.acquire(NAME, "m1", T0)
    await settle(exposure, ["m1"], Release.OVERDUE)
    assert (await exposure.status(NAME)).cap == 5


async def test_after_a_shrink_the_cap_grows_by_about_one_per_round(aclient, ns) -> None:
    exposure = limit(aclient, ns, ExposurePolicy(max_unconfirmed=100, adaptive=True, start=8))
    assert await exposure.acquire(NAME, "lost", T0)
    await settle(exposure, ["lost"], Release.REJECTED)
    assert (await exposure.status(NAME)).cap == 4
    for round_ in range(3):
        ids = [f"r{round_}-{i}" for i in range(4 + round_)]
        assert all(await take(exposure, ids, T0 + 1 + round_))
        await settle(exposure, ids, Release.DELIVERED)
    # Congestion avoidance: 4 -> 5 -> 6 -> 7, not slow start's doubling.
    assert (await exposure.status(NAME)).cap == 7


async def test_the_cap_never_shrinks_below_its_floor(aclient, ns) -> None:
    policy = ExposurePolicy(max_unconfirmed=100, adaptive=True, start=4, floor=3)
    exposure = limit(aclient, ns, policy)
    for round_ in range(5):
        assert await exposure.acquire(NAME, f"m{round_}", T0 + round_)
        await settle(exposure, [f"m{round_}"], Release.REJECTED)
    assert (await exposure.status(NAME)).cap == 3


async def test_not_sent_and_ended_give_the_slot_back_and_leave_the_cap(aclient, ns) -> None:
    exposure = limit(aclient, ns, ADAPTIVE)
    assert all(await take(exposure, ["m1", "m2"]))
    await settle(exposure, ["m1"], Release.NOT_SENT)
    await settle(exposure, ["m2"], Release.ENDED)
    status = await exposure.status(NAME)
    assert (status.outstanding, status.cap) == (0, 4)


async def test_a_slot_whose_release_was_lost_is_dropped_as_overdue_when_room_is_needed(
    aclient, ns
) -> None:
    policy = ExposurePolicy(max_unconfirmed=2, adaptive=True, start=2, stale_after_ms=60_000)
    exposure = limit(aclient, ns, policy)
    assert all(await take(exposure, ["m1", "m2"], T0))
    assert not await exposure.acquire(NAME, "m3", T0 + 59_000)
    taken = await exposure.acquire(NAME, "m3", T0 + 61_000)
    assert taken
    # Both dropped, as overdue: the cap shrank (once), and m3 holds the one slot.
    assert (taken.outstanding, taken.cap) == (1, 1)


async def test_a_sweep_drops_only_the_stale_slots(aclient, ns) -> None:
    exposure = limit(aclient, ns, ExposurePolicy(max_unconfirmed=5, stale_after_ms=60_000))
    await take(exposure, ["old1", "old2"], T0)
    await take(exposure, ["new"], T0 + 30_000)
    status = await exposure.sweep(NAME, T0 + 70_000)
    assert (status.dropped, status.outstanding, status.oldest_ms) == (2, 1, T0 + 30_000)
    assert not await exposure.release(NAME, "old1", Release.DELIVERED)  # a late receipt


async def test_a_reacquired_slot_restarts_its_overdue_clock(aclient, ns) -> None:
    exposure = limit(aclient, ns, ExposurePolicy(max_unconfirmed=5, stale_after_ms=60_000))
    await take(exposure, ["m1"], T0)
    await take(exposure, ["m1"], T0 + 50_000)  # sent again after it was unconfirmed
    assert (await exposure.sweep(NAME, T0 + 70_000)).outstanding == 1


async def test_a_newcomer_waits_behind_texts_held_for_room(aclient, client, ns) -> None:
    exposure = limit(aclient, ns, ExposurePolicy(max_unconfirmed=3))
    client.rpush(keys.hold("exposure:" + NAME, ns), "held1")
    refused = await exposure.acquire(NAME, "new")
    assert not refused
    assert (refused.outstanding, refused.cap, refused.waiting) == (0, 3, 1)


async def test_a_probe_goes_even_when_the_cap_is_full(aclient, ns) -> None:
    exposure = limit(aclient, ns, ExposurePolicy(max_unconfirmed=1))
    assert await exposure.acquire(NAME, "m1")
    assert not await exposure.acquire(NAME, "m2")
    assert await exposure.acquire(NAME, "probe", force=True)
    assert (await exposure.status(NAME)).outstanding == 2


async def test_a_reset_restarts_slow_start_and_can_forget_the_texts_out(
    aclient, client, ns
) -> None:
    exposure = limit(aclient, ns, ADAPTIVE)
    ids = [f"m{i}" for i in range(4)]
    await take(exposure, ids)
    await settle(exposure, ids[:2], Release.DELIVERED)
    assert (await exposure.status(NAME)).cap == 6
    operator = Exposure(client, ADAPTIVE, ns)
    kept = operator.reset(NAME)
    assert (kept.cap, kept.outstanding) == (4, 2)
    # Rejections of texts sent before the resume are of the block it ended.
    await settle(exposure, ids[2:3], Release.REJECTED)
    assert (await exposure.status(NAME)).cap == 4
    assert operator.reset(NAME, forget=True).outstanding == 0
    assert [s.name for s in operator.statuses()] == [NAME]


async def test_an_idle_carrier_forgets_its_cap_and_starts_again(aclient, client, ns) -> None:
    policy = ExposurePolicy(
        max_unconfirmed=100, adaptive=True, start=4, stale_after_ms=60_000, idle_restart_ms=50_000
    )
    exposure = limit(aclient, ns, policy)
    await take(exposure, ["m1"])
    await settle(exposure, ["m1"], Release.DELIVERED)
    assert 0 < client.pttl(keys.exposure_cap(NAME, ns)) <= 50_000
    client.delete(keys.exposure_cap(NAME, ns))  # what the expiry does, an idle hour on
    assert (await exposure.status(NAME)).cap == 4


async def test_a_lowered_ceiling_applies_at_once(aclient, ns) -> None:
    wide = limit(aclient, ns, ExposurePolicy(max_unconfirmed=10))
    assert all(await take(wide, [f"m{i}" for i in range(5)]))
    narrow = limit(aclient, ns, ExposurePolicy(max_unconfirmed=3))
    refused = await narrow.acquire(NAME, "m9", T0)  # on the same clock as the five
    assert (bool(refused), refused.outstanding, refused.cap) == (False, 5, 3)


async def test_with_the_limit_off_calls_that_need_it_say_so(aclient, client, ns) -> None:
    off = limit(aclient, ns, ExposurePolicy())
    assert not off.enabled
    with pytest.raises(ValueError, match="max_unconfirmed is not set"):
        await off.acquire(NAME, "m1")
    assert not await off.release_record("m1", {"exposure": NAME}, Release.DELIVERED)
    with pytest.raises(ValueError, match="max_unconfirmed is not set"):
        Exposure(client, ExposurePolicy(), ns).status(NAME)


async def test_a_release_by_record_goes_to_the_slot_the_text_took(aclient, ns) -> None:
    exposure = limit(aclient, ns)
    assert await exposure.acquire(NAME, "m1")
    # A receipt named another carrier (a ported number): the slot is still verizon's.
    record = {"carrier": "att", "campaign": "gotv", "exposure": NAME}
    assert await exposure.release_record("m1", record, Release.DELIVERED)
    assert not await exposure.release_record("m2", {"carrier": "att"}, Release.DELIVERED)


async def test_a_sweep_of_overdue_texts_gives_back_their_slots_in_one_go(aclient, ns) -> None:
    exposure = limit(aclient, ns, ADAPTIVE)
    await take(exposure, ["m1", "m2", "m3"])
    ended = [(i, {"exposure": NAME}) for i in ("m1", "m2")] + [("m9", {"campaign": "gotv"})]
    assert await exposure.release_records(ended, Release.OVERDUE) == 2
    status = await exposure.status(NAME)
    assert (status.outstanding, status.cap) == (1, 2)


def test_answers_and_receipts_settle_slots_by_what_they_say_of_the_carrier() -> None:
    assert answer_release(Category.OK) is None
    assert answer_release(Category.UNCERTAIN) is None
    assert answer_release(Category.AMBIGUOUS) is None
    assert answer_release(Category.CARRIER_BLOCK) is Release.REJECTED
    assert answer_release(Category.TRANSIENT) is Release.NOT_SENT
    assert answer_release(Category.THROTTLED) is Release.NOT_SENT
    assert answer_release(Category.BAD_NUMBER) is Release.ENDED
    assert answer_release(Category.OPTED_OUT) is Release.ENDED
    assert receipt_release("delivered", Category.OK) is Release.DELIVERED
    assert receipt_release("undelivered", Category.CARRIER_BLOCK) is Release.REJECTED
    assert receipt_release("undelivered", Category.BAD_NUMBER) is Release.ENDED
    assert receipt_release("undelivered", Category.AMBIGUOUS) is Release.ENDED
    assert receipt_release("sent", Category.OK) is None


def test_the_limit_is_off_unless_max_unconfirmed_is_set() -> None:
    assert ExposureSettings().max_unconfirmed is None
    policy = policy_from_settings(ExposureSettings(max_unconfirmed=100), receipt_timeout_s=30)
    assert policy.enabled
    assert policy.stale_after_ms == 90_000  # the receipts' timeout plus the margin


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"adaptive": True}, "adaptive = true needs max_unconfirmed"),
        ({"max_unconfirmed": 10, "adaptive": True, "start": 20}, "start (20) is above"),
        ({"max_unconfirmed": 10, "adaptive": True, "floor": 5, "start": 4}, "floor (5)"),
        ({"max_unconfirmed": 0}, "greater than or equal to 1"),
        ({"shrink": 1.0}, "less than 1"),
        ({"max_unconfirmd": 10}, "max_unconfirmd"),
        # Past what Redis holds as milliseconds: refused here, not at every acquire.
        ({"idle_restart_s": 1e20}, "idle_restart_s"),
        ({"overdue_margin_s": float("inf")}, "overdue_margin_s"),
        ({"idle_restart_s": float("nan")}, "idle_restart_s"),
        ({"max_unconfirmed": 10**30}, "max_unconfirmed"),
    ],
)
def test_a_bad_exposure_setting_is_refused_by_name(given: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(named)):
        ExposureSettings.model_validate(given)


def test_the_operators_view_matches_the_workers(client: redis.Redis, ns: str) -> None:
    operator = Exposure(client, FIXED, ns)
    status = operator.status(NAME)
    assert (status.outstanding, status.cap, status.room) == (0, 25, 25)
