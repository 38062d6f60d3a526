"""Sticky senders: a recipient keeps its number, and a pool change moves as few as it can."""

from __future__ import annotations

from collections import Counter

import pytest

from worker.routing import sticky_sender

POOL = [f"+1201555{i:04d}" for i in range(10)]
RECIPIENTS = [f"+1415555{i:04d}" for i in range(5000)]


def assign(pool: list[str]) -> dict[str, str]:
    return {r: sticky_sender(r, pool) for r in RECIPIENTS}


def test_a_recipient_always_gets_the_same_number_whatever_the_pools_order() -> None:
    assert assign(POOL) == assign(list(reversed(POOL)))


def test_recipients_spread_evenly_over_the_pool() -> None:
    shares = Counter(assign(POOL).values())
    assert set(shares) == set(POOL)
    assert max(shares.values()) < 1.25 * len(RECIPIENTS) / len(POOL)


def test_removing_a_number_moves_only_its_own_recipients() -> None:
    before = assign(POOL)
    gone = POOL[3]
    after = assign([n for n in POOL if n != gone])
    moved = {r for r in RECIPIENTS if before[r] != after[r]}
    assert moved == {r for r in RECIPIENTS if before[r] == gone}


def test_adding_a_number_moves_only_the_recipients_it_takes() -> None:
    before = assign(POOL)
    added = "+12015559999"
    after = assign([*POOL, added])
    moved = [r for r in RECIPIENTS if before[r] != after[r]]
    assert all(after[r] == added for r in moved)
    # About one in eleven: the new number's fair share, no more.
    assert len(moved) < 1.25 * len(RECIPIENTS) / (len(POOL) + 1)


def test_an_empty_pool_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="pool is empty"):
        sticky_sender(RECIPIENTS[0], [])
