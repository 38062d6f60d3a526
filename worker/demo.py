"""``sendq demo``: the seed story, end to end, on embedded defaults.

5,000 texts go out across AT&T, T-Mobile and Verizon through the simulator.
Partway through, Verizon starts filtering every text with 30007, visible only
in delivery receipts that arrive 2 s late. sendq's carrier breaker opens,
Verizon's texts are held while the other carriers finish, the filtering
stops, an operator resumes Verizon, and everything drains.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from worker import embedded
from worker.breaker import Breakers
from worker.holds import Holds
from worker.models import FINAL_STATUSES, Category, Status
from worker.producer import Producer
from worker.services import Stack
from worker.settings import load_settings
from worker.simulator.carriers import number_for
from worker.wiring import Root

DEFAULT_DATA_DIR = Path(".sendq/demo")
DEFAULT_CARRIERS = ("att", "tmobile", "verizon")
DEFAULT_TIMEOUT_S = 600.0
CAMPAIGN = "demo"
BLOCKED = "verizon"
FILTER_FROM_S = 2.0
RECEIPT_DELAY_S = 2.0
# How long the demo's "operator" watches the held count grow before resuming.
OPERATOR_PAUSE_S = 3.0
# What the summary counts as failed (unconfirmed and suppressed texts are in by_status).
FAILED_STATUSES = frozenset({Status.FAILED, Status.UNDELIVERED, Status.DEAD, Status.EXPIRED})


def scenario() -> dict[str, Any]:
    return {
        "dlr_delay_s": 0.05,
        "rules": [
            {
                "carrier": BLOCKED,
                "from_s": FILTER_FROM_S,
                "error_code": "30007",
                "mode": "receipt",
                "dlr_delay_s": RECEIPT_DELAY_S,
            },
        ],
    }


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


@dataclass
class Watch:
    """What the demo saw while it waited."""

    held_peak: int = 0
    opened_at_ms: int | None = None
    resumed_at_ms: int | None = None
    lines: list[str] = field(default_factory=list)


def run(*, count: int, progress: bool, data_dir: Path = DEFAULT_DATA_DIR) -> dict[str, Any]:
    # The demo owns its data directory: a fresh one per run, so its figures are its own.
    embedded.stop(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    url = embedded.ensure(data_dir)
    console = Console(stderr=True) if progress else None
    try:
        with Stack(redis_url=url, workdir=data_dir / "logs").start() as stack:
            return _drive(stack, url, count, console)
    finally:
        embedded.stop(data_dir)


def _drive(stack: Stack, url: str, count: int, console: Console | None) -> dict[str, Any]:
    root = Root(load_settings(redis_url=url))
    producer = root.producer()
    breakers = root.carrier_breakers()
    holds = root.holds()
    httpx.post(f"{stack.sim_url}/sim/scenario", json=scenario()).raise_for_status()
    httpx.post(f"{stack.sim_url}/sim/reset").raise_for_status()
    started = time.monotonic()
    report = producer.enqueue_many(jobs(count, str(int(time.time()))))
    ids = [a.message_id for a in report.accepted]
    watch = Watch()
    final = _wait(stack, producer, breakers, holds, len(ids), watch, console)
    elapsed = time.monotonic() - started
    sim = httpx.get(f"{stack.sim_url}/sim/report", timeout=10).json()
    counts = producer.store.stats().get(CAMPAIGN, {})
    first_block_ms = _first_block_ms(producer, ids)
    failed = sum(counts.get(s, 0) for s in FAILED_STATUSES)
    filtered = _filtered_before_pause(producer, ids)
    return {
        "enqueued": report.queued,
        "delivered": counts.get("delivered", 0),
        "failed": failed,
        # What "failed" is: the blocked carrier's texts it filtered before the
        # breaker paused it (the story's cost), and anything else.
        "filtered_before_pause": filtered,
        "failed_other": failed - filtered,
        "lost": _lost(report.queued, final, failed, sim),
        "doubled": int(sim.get("doubled", 0)),
        "texts_per_s": round(final / elapsed, 1) if elapsed else 0.0,
        "elapsed_s": round(elapsed, 2),
        "pause_latency_s": _latency_s(first_block_ms, watch.opened_at_ms),
        "sent_into_block": int(sim.get("filtered", 0)),
        "held_peak": watch.held_peak,
        "sent_while_paused": _sent_while_paused(producer, ids, watch),
        "by_status": counts,
        "handsets_received": int(sim.get("delivered_to_handsets", 0)),
    }


def _lost(enqueued: int, final: int, failed: int, sim: dict[str, Any]) -> int:
    """Texts that neither reached a handset nor ended failed, counted by the inboxes.

    A text sendq calls delivered that no inbox holds is lost too, so the
    handsets' count is checked as well as sendq's own records.
    """
    arrived = int(sim.get("delivered_to_handsets", 0)) - int(sim.get("doubled", 0))
    return max(enqueued - final, enqueued - arrived - failed, 0)


def _wait(
    stack: Stack,
    producer: Producer,
    breakers: Breakers,
    holds: Holds,
    expected: int,
    watch: Watch,
    console: Console | None,
) -> int:
    name = f"{BLOCKED}:{CAMPAIGN}"
    deadline = time.monotonic() + DEFAULT_TIMEOUT_S
    last_print, final = 0.0, 0
    while time.monotonic() < deadline:
        counts = producer.store.stats().get(CAMPAIGN, {})
        final = sum(n for s, n in counts.items() if s in FINAL_STATUSES)
        held = holds.count(name)
        watch.held_peak = max(watch.held_peak, held)
        state = breakers.status(name)
        if watch.opened_at_ms is None and state["state"] == "open":
            watch.opened_at_ms = state["since_ms"]
            _say(console, f"[red]{name} breaker OPEN[/red]: {state['why']}")
            # The carrier stops filtering (the operator called them, say).
            httpx.post(f"{stack.sim_url}/sim/scenario", json={"dlr_delay_s": 0.05})
        if (
            watch.opened_at_ms
            and watch.resumed_at_ms is None
            and time.time() * 1000 - watch.opened_at_ms > OPERATOR_PAUSE_S * 1000
        ):
            breakers.resume(
                name, who="demo-operator", reason="carrier confirmed the block is lifted"
            )
            watch.resumed_at_ms = int(time.time() * 1000)
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


def _filtered_before_pause(producer: Producer, ids: list[str]) -> int:
    """The blocked carrier's texts that ended failed on a carrier block (30007).

    They went out before its breaker opened: once it opens, its texts are held
    and the filtering has stopped by the time they are released, so every one
    of them was sent into the block while sendq was still learning of it.
    """
    found = 0
    for status, carrier, category in producer.store.fields(
        ids, ("status", "carrier", "receipt_category")
    ):
        found += (
            status in FAILED_STATUSES and carrier == BLOCKED and category == Category.CARRIER_BLOCK
        )
    return found


def _first_block_ms(producer: Producer, ids: list[str]) -> int | None:
    """When the first 30007 reached sendq: the earliest 'undelivered' in any history."""
    first: int | None = None
    for msg_id in ids:
        for entry in producer.store.history(msg_id):
            if entry.get("to") == "undelivered":
                first = entry["at"] if first is None else min(first, entry["at"])
    return first


def _sent_while_paused(producer: Producer, ids: list[str], watch: Watch) -> int:
    """Verizon texts provably admitted to a provider while its breaker was open.

    Admission runs after the claim and before the answer that records "sent". Both
    timestamps are taken by the worker as it builds the call, so a claim stamped after
    the open ran after it, and a "sent" stamped before the resume came after an
    admission that ran before it: a text with both was admitted while open. A text in
    flight across the open or the resume is not counted: it may be either.
    """
    if watch.opened_at_ms is None:
        return 0
    until = watch.resumed_at_ms or 2**62
    count = 0
    for msg_id in ids:
        claimed_at = 0
        for entry in producer.store.history(msg_id):
            # The claim, not the attempts written under it (sending -> sending).
            if entry.get("to") == "sending" and entry.get("from") != "sending":
                claimed_at = entry.get("at", 0)
            sent_at = entry.get("at", 0)
            if entry.get("to") == "sent" and watch.opened_at_ms < claimed_at and sent_at < until:
                count += (producer.store.get(msg_id) or {}).get("carrier") == BLOCKED
    return count


def _latency_s(first_ms: int | None, opened_ms: int | None) -> float | None:
    if first_ms is None or opened_ms is None:
        return None
    return round((opened_ms - first_ms) / 1000, 3)


def _say(console: Console | None, text: str) -> None:
    if console is not None:
        console.print(text, highlight=False)


# The summary's lines, in order.
SUMMARY_KEYS = (
    "enqueued",
    "delivered",
    "failed",
    "lost",
    "doubled",
    "texts_per_s",
    "elapsed_s",
    "pause_latency_s",
    "sent_into_block",
    "held_peak",
    "sent_while_paused",
)


def print_summary(summary: dict[str, Any], console: Console) -> None:
    console.print("[bold]sendq demo[/bold]")
    for key in SUMMARY_KEYS:
        note = _what_failed(summary) if key == "failed" else ""
        console.print(f"  {key:<18} {summary[key]}{note}", highlight=False)


def _what_failed(summary: dict[str, Any]) -> str:
    """Which texts "failed" counts: a bare number reads as sendq's own failure."""
    filtered, other = summary.get("filtered_before_pause", 0), summary.get("failed_other", 0)
    if not summary["failed"]:
        return ""
    parts = [f"{filtered} {BLOCKED} texts filtered (30007) before its breaker paused it"]
    if other:
        parts.append(f"{other} other")
    return f"  ({'; '.join(parts)})"
