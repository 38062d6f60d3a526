"""``sendq demo --story silent``: filtering that does not announce itself.

5,000 texts go out across AT&T, T-Mobile and Verizon through the simulator,
paced as a real campaign is. People answer about one text in twenty, within
seconds. A few seconds in, Verizon starts dropping every text while its
receipts keep saying "delivered": no error code anywhere, only silence where
its people's replies used to be. sendq's deliverability watch compares
Verizon's reply rate with AT&T's and T-Mobile's in the same campaign and
pauses Verizon with the evidence; its texts are held while the others finish;
Verizon lifts the filter, the "operator" resumes, and everything drains.

The summary gives the trip latency in Verizon texts (accepted by the provider
between the drop and the pause, counted by the simulator) and in seconds, the
evidence, and ``lost`` / ``doubled``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from worker import embedded
from worker.breaker import Breakers, State
from worker.holds import Holds
from worker.models import FINAL_STATUSES
from worker.producer import Producer
from worker.services import Stack
from worker.settings import load_settings
from worker.simulator.carriers import number_for
from worker.simulator.client import SimulatorClient
from worker.wiring import Root

DEFAULT_DATA_DIR = Path(".sendq/demo-silent")
CARRIERS = ("att", "tmobile", "verizon")
CAMPAIGN = "demo"
SILENT = "verizon"
DROP_FROM_S = 4.0
# Texts a second, as a campaign's limits would pace it: the watch's evidence
# comes from replies, which take seconds, so a campaign sent in an instant
# would be over before anyone could answer.
RATE_PER_S = 150
OPERATOR_PAUSE_S = 3.0
DEFAULT_TIMEOUT_S = 600.0
WATCH_ENV = {"SENDQ_WATCH__CHECK_S": "1"}


def scenario() -> dict[str, Any]:
    return {
        "dlr_delay_median_s": 0.3,
        "dlr_delay_p99_s": 2.0,
        "replies": {
            "rate": 0.05,
            "carriers": {"att": 0.045, "tmobile": 0.05, "verizon": 0.05},
            "delay_median_s": 2.0,
            "delay_p99_s": 10.0,
            "seed": 11,
            "kinds": {"ordinary": 1.0},
        },
        "rules": [{"carrier": SILENT, "from_s": DROP_FROM_S, "silent": True}],
    }


def jobs(count: int, run_id: str) -> list[dict[str, Any]]:
    return [
        {
            "to": number_for(CARRIERS[i % len(CARRIERS)], i),
            "body": f"sendq silent demo {run_id} #{i}: count on your vote? Reply STOP to end",
            "campaign": CAMPAIGN,
            "key": f"silent-{run_id}-{i}",
        }
        for i in range(count)
    ]


@dataclass
class Seen:
    held_peak: int = 0
    paused_at_ms: int | None = None
    evidence: str = ""
    by: str = ""
    resumed_at_ms: int | None = None
    lines: list[str] = field(default_factory=list)


def run(*, count: int, progress: bool, data_dir: Path = DEFAULT_DATA_DIR) -> dict[str, Any]:
    embedded.stop(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    url = embedded.ensure(data_dir)
    console = Console(stderr=True) if progress else None
    env = {
        **WATCH_ENV,
        "SENDQ_LIMITS__PROVIDERS": json.dumps({"twilio": {"rate": RATE_PER_S, "burst": 5}}),
    }
    try:
        with Stack(redis_url=url, workdir=data_dir / "logs", extra_env=env).start() as stack:
            return _drive(stack, url, count, console)
    finally:
        embedded.stop(data_dir)


def _drive(stack: Stack, url: str, count: int, console: Console | None) -> dict[str, Any]:
    root = Root(load_settings(redis_url=url))
    producer = root.producer()
    sim = SimulatorClient(stack.sim_url)
    sim.play(scenario())
    drop_ms = int(sim.report()["started_ms"] + DROP_FROM_S * 1000)
    started = time.monotonic()
    report = producer.enqueue_many(jobs(count, str(int(time.time()))))
    seen = Seen()
    final = _wait(stack, sim, producer, root.carrier_breakers(), root.holds(), count, seen, console)
    elapsed = time.monotonic() - started
    sim_report = sim.report()
    counts = producer.store.stats().get(CAMPAIGN, {})
    paused_ms = seen.paused_at_ms
    into = sim.accepted(SILENT, after_ms=drop_ms, until_ms=paused_ms) if paused_ms else None
    sim.close()
    arrived = int(sim_report.get("delivered_to_handsets", 0)) - int(sim_report.get("doubled", 0))
    dropped = int(sim_report.get("silently_dropped", 0))
    return {
        "story": "silent",
        "enqueued": report.queued,
        "delivered": counts.get("delivered", 0),
        "paused_by": seen.by,
        "evidence": seen.evidence,
        "trip_latency_texts": into["accepted"] if into else None,
        "trip_latency_s": round((paused_ms - drop_ms) / 1000, 1) if paused_ms else None,
        "silently_dropped": dropped,
        "held_peak": seen.held_peak,
        # A text the simulator dropped silently still counts as handled: sendq
        # was told "delivered", which is the story.
        "lost": max(report.queued - final, report.queued - arrived - dropped, 0),
        "doubled": int(sim_report.get("doubled", 0)),
        "texts_per_s": round(final / elapsed, 1) if elapsed else 0.0,
        "elapsed_s": round(elapsed, 2),
        "by_status": counts,
    }


def _wait(
    stack: Stack,
    sim: SimulatorClient,
    producer: Producer,
    breakers: Breakers,
    holds: Holds,
    expected: int,
    seen: Seen,
    console: Console | None,
) -> int:
    name = f"{SILENT}:{CAMPAIGN}"
    deadline = time.monotonic() + DEFAULT_TIMEOUT_S
    last_print, final = 0.0, 0
    while time.monotonic() < deadline:
        counts = producer.store.stats().get(CAMPAIGN, {})
        final = sum(n for s, n in counts.items() if s in FINAL_STATUSES)
        held = holds.count(name)
        seen.held_peak = max(seen.held_peak, held)
        status = breakers.status(name)
        if seen.paused_at_ms is None and status["state"] in (State.PAUSED, State.OPEN):
            seen.paused_at_ms, seen.evidence, seen.by = (
                status["since_ms"],
                status["why"],
                status["by"] or "breaker",
            )
            _say(console, f"[red]{name} paused by {seen.by}[/red]: {seen.evidence}")
            # Verizon lifts the filter (the operator called them, say).
            lifted = {k: v for k, v in scenario().items() if k != "rules"}
            httpx.post(f"{stack.sim_url}/sim/scenario", json=lifted, timeout=10)
        if _time_to_resume(seen):
            breakers.resume(name, who="demo-operator", reason="Verizon confirmed the filter lifted")
            seen.resumed_at_ms = int(time.time() * 1000)
            _say(console, f"[green]{name} resumed by the operator[/green]; releasing {held} held")
        if time.monotonic() - last_print > 1:
            last_print = time.monotonic()
            _say(
                console, f"  {final}/{expected} final, {held} held  {dict(sorted(counts.items()))}"
            )
        if final >= expected:
            break
        time.sleep(0.1)
    return final


def _time_to_resume(seen: Seen) -> bool:
    return bool(
        seen.paused_at_ms
        and seen.resumed_at_ms is None
        and time.time() * 1000 - seen.paused_at_ms > OPERATOR_PAUSE_S * 1000
    )


def _say(console: Console | None, text: str) -> None:
    if console is not None:
        console.print(text, highlight=False)


SUMMARY_KEYS = (
    "enqueued",
    "delivered",
    "paused_by",
    "evidence",
    "trip_latency_texts",
    "trip_latency_s",
    "silently_dropped",
    "held_peak",
    "lost",
    "doubled",
    "texts_per_s",
    "elapsed_s",
)


def print_summary(summary: dict[str, Any], console: Console) -> None:
    console.print("[bold]sendq demo: the silent story[/bold]")
    for key in SUMMARY_KEYS:
        console.print(f"  {key:<20} {summary[key]}", highlight=False)
