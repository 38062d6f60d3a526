"""Retry policies: small pure functions of a state, with the clock and sleep injected.

Two tiers (DESIGN.md): quick retries inside one attempt (tenacity, honouring
Retry-After), and long backoff by dramatiq's delayed redelivery.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

from worker.providers.base import SendResult
from worker.verdicts import RETRY_NOW

DEFAULT_QUICK_ATTEMPTS = 3
DEFAULT_QUICK_BASE_S = 0.05
DEFAULT_QUICK_CAP_S = 1.0


def ceiling(base: float, cap: float, attempt: int) -> float:
    """``base`` doubled for each attempt after the first, never more than ``cap``."""
    return min(cap, base * 2.0 ** max(0, attempt - 1))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter and a cap; ``delay_ms(n)`` for the n-th failure."""

    base_ms: int
    cap_ms: int

    def delay_ms(self, failures: int, rng: random.Random | None = None) -> int:
        top = ceiling(self.base_ms, self.cap_ms, failures)
        # Half fixed, half jitter: never hammer at once, never wait for nothing.
        return int(top / 2 + (rng or random).random() * top / 2)


def full_jitter_ms(
    base_ms: int, cap_ms: int, attempt: int, rng: random.Random | None = None
) -> int:
    """Full jitter: anywhere up to ``base_ms`` doubled per attempt, capped at ``cap_ms``.

    For pacing, where many texts hit the same wall at once: spreading them over the
    whole range keeps them from coming back together.
    """
    return max(1, int((rng or random).random() * ceiling(base_ms, cap_ms, attempt)))


def quick_wait(cap_s: float, base_s: float) -> Callable[[RetryCallState], float]:
    """Honour the provider's Retry-After when it gave one, else exponential with jitter."""

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        result = outcome.result() if outcome and not outcome.failed else None
        if isinstance(result, SendResult) and result.retry_after_s is not None:
            return min(cap_s, result.retry_after_s)
        top = ceiling(base_s, cap_s, state.attempt_number)
        return random.uniform(top / 2, top)

    return wait


def worth_retrying_now(cap_s: float) -> Callable[[SendResult], bool]:
    def check(result: SendResult) -> bool:
        if result.category not in RETRY_NOW:
            return False
        # A long Retry-After is dramatiq's job, not a sleeping worker's.
        return result.retry_after_s is None or result.retry_after_s <= cap_s

    return check


def quick_retrying(
    *,
    attempts: int = DEFAULT_QUICK_ATTEMPTS,
    base_s: float = DEFAULT_QUICK_BASE_S,
    cap_s: float = DEFAULT_QUICK_CAP_S,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> AsyncRetrying:
    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=quick_wait(cap_s, base_s),
        retry=retry_if_result(worth_retrying_now(cap_s)),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        reraise=True,
        sleep=sleep or asyncio.sleep,
    )
