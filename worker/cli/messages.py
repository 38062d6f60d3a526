"""``sendq messages``: one record and its history; counts by campaign and status."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from worker.cli.common import JsonFlag, connected, emit, fail, out

if TYPE_CHECKING:
    from worker.store import Store

app = typer.Typer(help="Inspect message records.", no_args_is_help=True)


def _store() -> Store:
    return connected(lambda root: root.store())


@app.command("show")
def messages_show(message_id: str, as_json: JsonFlag = False) -> None:
    """Show one message record and its history."""
    from worker.phone import mask

    store = _store()
    record = store.get(message_id)
    if record is None:
        fail(f"no message with id {message_id!r}", as_json=as_json)
    history = store.history(message_id)
    if as_json:
        emit({"record": record, "history": history})
        return
    table = Table(title=f"message {message_id}", show_header=False)
    for name, value in sorted(record.items()):
        # The terminal is not a log: the number is masked here, for the screen.
        table.add_row(name, mask(value) if name == "to" else value)
    out.print(table)
    hist = Table("at (UTC ms)", "from", "to", "why", title="history")
    for entry in history:
        hist.add_row(
            str(entry.get("at")), entry.get("from", ""), entry.get("to", ""), entry.get("why", "")
        )
    out.print(hist)


@app.command("stats")
def messages_stats(as_json: JsonFlag = False) -> None:
    """Count texts by campaign and status, and held texts by reason (quiet hours, carrier)."""
    from worker.counts import REPORTED_HELD_FOR, REPORTED_STATUSES, split

    store = _store()
    counts = split(store.stats_and_reasons())
    counters = store.counters()
    if as_json:
        emit({"by_campaign": counts.by_status, "held_for": counts.held_for, "counters": counters})
        return
    statuses = sorted({s for c in counts.by_status.values() for s in c} | set(REPORTED_STATUSES))
    reasons = sorted({r for c in counts.held_for.values() for r in c} | set(REPORTED_HELD_FOR))
    table = Table(
        "campaign", *statuses, *(f"held ({r.replace('_', ' ')})" for r in reasons), "total"
    )
    for campaign in counts.campaigns():
        by_status = counts.by_status.get(campaign, {})
        held_for = counts.held_for.get(campaign, {})
        table.add_row(
            campaign,
            *(str(by_status.get(s, 0)) for s in statuses),
            *(str(held_for.get(r, 0)) for r in reasons),
            str(sum(by_status.values())),
        )
    out.print(table)
    for name, value in counters.items():
        out.print(f"{name}: {value}")
