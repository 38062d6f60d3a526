"""``sendq demo``: the whole pipeline on embedded defaults, against the simulator."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from rich.console import Console

from worker import embedded
from worker.enqueue import Producer
from worker.models import FINAL_STATUSES
from worker.services import Stack
from worker.simulator.carriers import number_for

DEFAULT_DATA_DIR = Path(".sendq/demo")
DEFAULT_CARRIERS = ("att", "tmobile", "verizon")
DEFAULT_TIMEOUT_S = 600.0
CAMPAIGN = "demo"


def jobs(count: int, run_id: str) -> list[dict[str, Any]]:
    # Unique bodies let the simulator's inboxes spot a double send.
    return [
        {
            "to": number_for(DEFAULT_CARRIERS[i % len(DEFAULT_CARRIERS)], i),
            "body": f"sendq demo {run_id} #{i}: polls are open until 8pm. Reply STOP to opt out",
            "campaign": CAMPAIGN,
            "key": f"demo-{run_id}-{i}",
        }
        for i in range(count)
    ]


def run(*, count: int, progress: bool, data_dir: Path = DEFAULT_DATA_DIR) -> dict[str, Any]:
    # The demo owns its data directory: a fresh one per run, so its figures are its own.
    embedded.stop(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    url = embedded.ensure(data_dir)
    console = Console(stderr=True)
    try:
        with Stack(redis_url=url, workdir=data_dir / "logs").start() as stack:
            return _drive(stack, url, count, console if progress else None)
    finally:
        embedded.stop(data_dir)


def _drive(stack: Stack, url: str, count: int, console: Console | None) -> dict[str, Any]:
    producer = Producer(redis.Redis.from_url(url))
    run_id = str(int(time.time()))
    started = time.monotonic()
    report = producer.enqueue_many(jobs(count, run_id))
    enqueued = report.queued
    final = _wait_final(producer, enqueued, console)
    elapsed = time.monotonic() - started
    sim = httpx.get(f"{stack.sim_url}/sim/report", timeout=10).json()
    counts = producer.store.stats().get(CAMPAIGN, {})
    return {
        "enqueued": enqueued,
        "delivered": counts.get("delivered", 0),
        "failed": sum(counts.get(s, 0) for s in ("failed", "undelivered", "dead", "expired")),
        "lost": enqueued - final,
        "doubled": int(sim.get("doubled", 0)),
        "texts_per_s": round(final / elapsed, 1) if elapsed else 0.0,
        "elapsed_s": round(elapsed, 2),
        "by_status": counts,
        "handsets_received": int(sim.get("delivered_to_handsets", 0)),
    }


def _wait_final(producer: Producer, expected: int, console: Console | None) -> int:
    deadline = time.monotonic() + DEFAULT_TIMEOUT_S
    final = 0
    last_print = 0.0
    while time.monotonic() < deadline:
        counts = producer.store.stats().get(CAMPAIGN, {})
        final = sum(n for s, n in counts.items() if s in FINAL_STATUSES)
        if console and time.monotonic() - last_print > 1:
            last_print = time.monotonic()
            console.print(f"  {final}/{expected} final  {dict(sorted(counts.items()))}")
        if final >= expected:
            break
        time.sleep(0.2)
    return final


def print_summary(summary: dict[str, Any], console: Console) -> None:
    console.print("[bold]sendq demo[/bold]")
    for key in ("enqueued", "delivered", "failed", "lost", "doubled", "texts_per_s", "elapsed_s"):
        console.print(f"  {key:<12} {summary[key]}")
