"""Retry policies: pure functions, with the jitter's source injected."""

from __future__ import annotations

import random

import pytest

from worker.retry import Backoff, full_jitter_ms


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
