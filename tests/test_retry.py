"""Retry policies: pure functions, with the jitter's source injected."""

from __future__ import annotations

import random

import pytest

from worker.models import Category
from worker.providers.base import SendResult
from worker.retry import (
    DEFAULT_QUICK_ATTEMPTS,
    DEFAULT_QUICK_BASE_S,
    DEFAULT_QUICK_CAP_S,
    Backoff,
    full_jitter_ms,
    quick_retrying,
)


class Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("attempt", "ceiling_ms"),
    [(1, 1000), (2, 2000), (3, 4000), (4, 8000), (5, 10_000), (9, 10_000)],
)
def test_full_jitter_doubles_per_attempt_up_to_the_cap(attempt: int, ceiling_ms: int) -> None:
    assert full_jitter_ms(1000, 10_000, attempt, Fixed(1.0)) == ceiling_ms
    assert full_jitter_ms(1000, 10_000, attempt, Fixed(0.5)) == ceiling_ms // 2


def test_full_jitter_never_asks_for_no_wait_at_all() -> None:
    assert full_jitter_ms(1000, 10_000, 1, Fixed(0.0)) == 1


def test_full_jitter_spreads_over_its_whole_range() -> None:
    rng = random.Random(3)
    delays = [full_jitter_ms(1000, 10_000, 1, rng) for _ in range(500)]
    assert min(delays) < 100 and max(delays) > 900 and all(1 <= d <= 1000 for d in delays)


def test_backoff_keeps_half_its_ceiling_fixed() -> None:
    backoff = Backoff(base_ms=1000, cap_ms=30_000)
    assert [backoff.delay_ms(n, Fixed(0.0)) for n in (1, 2, 6, 7)] == [500, 1000, 15_000, 15_000]
    assert [backoff.delay_ms(n, Fixed(1.0)) for n in (1, 2, 6, 7)] == [1000, 2000, 30_000, 30_000]


def answers(*results: SendResult):  # type: ignore[no-untyped-def]
    queue = list(results)
    calls: list[int] = []

    async def send() -> SendResult:
        calls.append(1)
        return queue.pop(0)

    return send, calls


def recording_sleep(slept: list[float]):  # type: ignore[no-untyped-def]
    async def sleep(s: float) -> None:
        slept.append(s)

    return sleep


FAULT = SendResult(Category.TRANSIENT, error_code="20503")
OK = SendResult(Category.OK, provider_message_id="SM1")


async def test_quick_retries_back_off_exponentially_with_jitter_then_stop() -> None:
    slept: list[float] = []
    send, calls = answers(FAULT, FAULT, FAULT, OK)
    result = await quick_retrying(sleep=recording_sleep(slept))(send)
    assert result.category is Category.TRANSIENT and len(calls) == DEFAULT_QUICK_ATTEMPTS
    base = DEFAULT_QUICK_BASE_S
    assert base / 2 <= slept[0] <= base and base <= slept[1] <= 2 * base


async def test_a_quick_retry_waits_what_retry_after_asks() -> None:
    slept: list[float] = []
    throttled = SendResult(Category.THROTTLED, error_code="20429", retry_after_s=0.3)
    send, _ = answers(throttled, OK)
    assert (await quick_retrying(sleep=recording_sleep(slept))(send)).ok
    assert slept == [0.3]


async def test_a_retry_after_longer_than_the_cap_is_left_to_dramatiq() -> None:
    slept: list[float] = []
    throttled = SendResult(Category.THROTTLED, error_code="20429", retry_after_s=5.0)
    send, calls = answers(throttled, OK)
    result = await quick_retrying(sleep=recording_sleep(slept))(send)
    assert result.category is Category.THROTTLED and len(calls) == 1 and slept == []


async def test_the_quick_wait_never_exceeds_its_cap() -> None:
    slept: list[float] = []
    send, _ = answers(*[FAULT] * 9, OK)
    await quick_retrying(attempts=10, sleep=recording_sleep(slept))(send)
    assert max(slept) <= DEFAULT_QUICK_CAP_S


@pytest.mark.parametrize(
    "category",
    [Category.AMBIGUOUS, Category.BAD_NUMBER, Category.OPTED_OUT, Category.CARRIER_BLOCK],
)
async def test_answers_about_the_text_are_not_retried_quickly(category: Category) -> None:
    send, calls = answers(SendResult(category, error_code="x"), OK)
    assert (await quick_retrying(sleep=recording_sleep([]))(send)).category is category
    assert len(calls) == 1
