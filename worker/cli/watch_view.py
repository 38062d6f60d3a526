"""How ``sendq carriers status`` shows the deliverability watch (worker/watch/).

- ``with_watch``: the breaker rows, each with its pair's watch status under
  ``watch`` (None when the watch has no counts for it), and a row for every pair
  the watch knows that has no breaker record yet (``--json``).
- ``summary_table``: per pair, its breaker state and held texts beside each
  signal's rate, the other carriers' and its baseline's, the texts behind them
  and the test's decision (the human output).
- ``tests_table`` and ``evidence_lines``: every test of every signal in full:
  statistic, threshold, p-value, and the run of texts behind it (``--watch``).
- ``trip_lines``: the evidence of each signal that trips now or has a trip on record.

Only rendering: the status itself is ``Root.watch_status()`` (one synchronous read).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich import box
from rich.table import Table

from worker.breaker import State
from worker.holds import ALL_CAMPAIGNS
from worker.watch import PairStatus
from worker.watch.sequential import Decision

# What each signal's rate is a share of, said once under the table.
RATE_MEANS = (
    "delivery: delivered share of final receipts; receipts: share overdue; "
    "replies, optouts: per delivered text"
)
NO_RATE = "-"
MAX_NAME_WIDTH = 40
CLOSED = State.CLOSED.value


def with_watch(
    rows: Sequence[Mapping[str, Any]],
    pairs: Sequence[PairStatus],
    breaker_row: Callable[[Sequence[str]], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Every breaker row with ``watch`` added, and the pairs without a breaker record.

    ``breaker_row`` gives the rows (breaker status and held texts) of names with no
    record yet, so every row has the same keys whichever way it came.
    """
    by_name = {p.name: p for p in pairs}
    known = {str(r["name"]) for r in rows}
    unrecorded = [p.name for p in pairs if p.name not in known]
    merged = [dict(r) for r in rows] + (breaker_row(unrecorded) if unrecorded else [])
    for row in merged:
        pair = by_name.get(str(row["name"]))
        row["watch"] = pair.as_dict() if pair is not None else None
    return sorted(merged, key=lambda r: str(r["name"]))


def percent(rate: float | None) -> str:
    """Small rates (opt-outs) keep a second decimal: 0.05% is not 0.1%."""
    if rate is None:
        return NO_RATE
    value = 100 * rate
    return f"{value:.2f}%" if 0 < value < 1 else f"{value:.1f}%"


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


def summary_table(pairs: Sequence[PairStatus], rows: Sequence[Mapping[str, Any]]) -> Table:
    """One row per pair and signal; the pair's breaker state and held texts under its
    name, and its carrier-wide breaker's state when that one is not closed.

    ``on trip`` is what a trip of the signal does: pause, alert, or off (shown only).
    """
    by_name = {str(r["name"]): r for r in rows}
    table = _table(
        "watch: each carrier beside the campaign's other carriers and its own baseline",
        ("carrier:campaign", "signal", "rate", "others", "baseline", "texts", "test", "on trip"),
        pairs,
    )
    table.caption = RATE_MEANS
    for pair in pairs:
        row = by_name.get(pair.name, {})
        beside = [pair.name, str(row.get("state", CLOSED)), f"{row.get('held', 0)} held"]
        # A carrier-wide pause holds the pair's texts whatever its own breaker says.
        wide = by_name.get(f"{pair.carrier}:{ALL_CAMPAIGNS}")
        if wide is not None and wide["state"] != CLOSED:
            beside.append(f"{wide['name']} {wide['state']}")
        for i, s in enumerate(pair.signals):
            table.add_row(
                beside[i] if i < len(beside) else "",
                s.signal,
                percent(s.rate),
                percent(s.others_rate),
                percent(s.baseline_rate),
                str(s.texts),
                s.decision.value,
                s.action,
            )
        table.add_section()
    return table


def tests_table(pairs: Sequence[PairStatus]) -> Table:
    """Every test in full: one row per pair, signal and reference (evidence: ``evidence_lines``)."""
    table = _table(
        "watch: every test (it trips when the statistic reaches the threshold)",
        ("carrier:campaign", "signal", "against", "test", "statistic", "threshold", "p-value"),
        pairs,
    )
    for pair in pairs:
        first = True
        for s in pair.signals:
            for c in s.comparisons:
                table.add_row(
                    pair.name if first else "",
                    s.signal,
                    c.reference,
                    c.decision.value,
                    f"{c.statistic:.2f}",
                    f"{c.threshold:.2f}",
                    _p_value(c.p_value),
                )
                first = False
            if not s.comparisons:  # a one-carrier campaign with no baseline: nothing to test
                table.add_row(pair.name if first else "", s.signal, NO_RATE, "no test", *[""] * 3)
                first = False
        table.add_section()
    return table


def _table(title: str, columns: Sequence[str], pairs: Sequence[PairStatus]) -> Table:
    # Collapsed padding, so a summary of 8 columns fits 80 characters; the pair's
    # name is never cut short (the other columns give way first).
    table = Table(*columns, title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    longest = max((len(p.name) for p in pairs), default=0)
    table.columns[0].min_width = min(longest, MAX_NAME_WIDTH)
    return table


def evidence_lines(pairs: Sequence[PairStatus]) -> list[str]:
    """The run behind each test that has one: the evidence the statistic weighs."""
    return [
        f"{pair.name} {s.signal} vs {c.reference}: {c.evidence}"
        for pair in pairs
        for s in pair.signals
        for c in s.comparisons
        if c.evidence
    ]


def _p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def trip_lines(pairs: Sequence[PairStatus]) -> list[str]:
    """Each signal tripping now, with its evidence, and each trip on record."""
    out: list[str] = []
    for pair in pairs:
        for s in pair.signals:
            if s.decision is Decision.TRIP:
                out.append(f"{pair.name} {s.signal}: trip ({s.action}): {s.evidence}")
            if s.trip is not None:
                out.append(
                    f"{pair.name} {s.signal}: tripped at {_clock(s.trip.at_ms)} "
                    f"({s.trip.action}): {s.trip.evidence}"
                )
    return out
