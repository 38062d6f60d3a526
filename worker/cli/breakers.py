"""``sendq carriers`` and ``sendq providers``: status, pause, resume, history.

Which breakers an action touches, and what it needs (a reason, a known provider), is
worker/operations.py's rule; this module parses, calls it, prints, and announces the
change, waiting a few seconds at most for the alert.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from worker.cli import watch_view
from worker.cli.common import (
    ByOption,
    JsonFlag,
    connected,
    emit,
    err,
    fail,
    operator,
    out,
    the_root,
)
from worker.operations import DEFAULT_HISTORY_COUNT, DEFAULT_RESUME_REASON, Outcome

if TYPE_CHECKING:
    from worker.operations import Operations

carriers_app = typer.Typer(
    help="Carrier breakers: status, pause, resume, history.", no_args_is_help=True
)
providers_app = typer.Typer(
    help="Provider breakers: status, pause, resume, history.", no_args_is_help=True
)

CarrierArg = Annotated[str, typer.Argument(help="Carrier: att, tmobile, verizon, ...")]
CampaignOption = Annotated[str | None, typer.Option(help="One campaign (default: all).")]
PauseReason = Annotated[str, typer.Option(help="Why (kept in the audit record).")]
ResumeReason = Annotated[str, typer.Option(help="Why (kept in the audit record).")]
LimitOption = Annotated[int, typer.Option(help="Entries to show.", min=1)]


def _operations() -> Operations:
    return connected(lambda root: root.operations())


@contextmanager
def _refusals(as_json: bool) -> Iterator[None]:
    """An action the rule refuses: bad usage, exit code 2."""
    from worker.errors import MissingReason, UnknownProvider

    try:
        yield
    except MissingReason:
        fail("--reason must say why", 2, as_json=as_json)
    except UnknownProvider as exc:
        fail(exc.reason, 2, as_json=as_json)


def _announce(ops: Operations, outcome: Outcome) -> None:
    """Log and post the change's alerts; the command must not exit before they are tried."""
    from worker import logs
    from worker.alerts import DEFAULT_FLUSH_S

    if not outcome.transitions:
        return
    # structlog's default prints to stdout, which is the command's JSON output.
    logs.configure(the_root().settings.log_level)
    if not ops.announce_now(outcome, source="cli"):
        err.print(
            f"[yellow]sendq:[/yellow] warning: the alert was not confirmed within "
            f"{DEFAULT_FLUSH_S:g} s; the {outcome.kind} change itself is done",
            highlight=False,
        )


def _print_changes(outcome: Outcome) -> None:
    for c in outcome.changes:
        print(f"{c.name}: {c.state}" + ("" if c.changed else " (unchanged)"))


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) if ms else ""


def _print_history(entries: list[dict[str, str]]) -> None:
    table = Table("when", "breaker", "from", "to", "who", "why")
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(e["at_ms"]) / 1000))
        table.add_row(when, e["name"], e["from"], e["to"], e["who"], e["why"])
    out.print(table)


# -- carriers ------------------------------------------------------------------


@carriers_app.command("status")
def carriers_status(
    as_json: JsonFlag = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Every watch test in full: statistic, threshold, p.")
    ] = False,
) -> None:
    """Each carrier x campaign: state, window counts, held texts, since when and why,
    and the deliverability watch: each signal's rates beside the others' and the baseline."""
    ops = _operations()
    rows = ops.carrier_status()
    pairs = connected(lambda root: root.watch_status())
    everyone = watch_view.with_watch(rows, pairs, partial(_unrecorded_rows, ops))
    if as_json:
        emit({"carriers": everyone})
        return
    if watch:
        out.print(watch_view.tests_table(pairs) if pairs else "the watch has no counts yet")
        lines = watch_view.evidence_lines(pairs)
    else:
        _print_breakers(rows)
        if pairs:
            out.print(watch_view.summary_table(pairs, everyone))
        lines = []
    for line in lines + watch_view.trip_lines(pairs):
        out.print(line, highlight=False, markup=False)


def _print_breakers(rows: list[dict[str, Any]]) -> None:
    table = Table("carrier:campaign", "state", "since", "calls", "blocks", "held", "why", "by")
    for r in rows:
        counts = (str(r["window_calls"]), str(r["window_failures"]), str(r["held"]))
        table.add_row(r["name"], r["state"], _clock(r["since_ms"]), *counts, r["why"], r["by"])
    out.print(table)


def _unrecorded_rows(ops: Operations, names: Sequence[str]) -> list[dict[str, Any]]:
    """Breaker rows for pairs the watch knows that have no breaker record yet.

    Read through the operations' own breakers and holds, so the rows have the same
    keys as ``carrier_status``'s (closed, nothing held, until something happens).
    """
    held = ops.holds.counts(list(names))
    return [ops.carriers.status(name) | {"held": held[name]} for name in names]


@carriers_app.command("pause")
def carriers_pause(
    name: CarrierArg,
    reason: PauseReason,
    campaign: CampaignOption = None,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Hold a carrier's texts until an operator resumes it. Never lifted automatically."""
    ops = _operations()
    with _refusals(as_json):
        outcome = ops.pause_carrier(name, reason=reason, who=by or operator(), campaign=campaign)
    _carrier_result(outcome, as_json)
    _announce(ops, outcome)


@carriers_app.command("resume")
def carriers_resume(
    name: CarrierArg,
    campaign: CampaignOption = None,
    reason: ResumeReason = DEFAULT_RESUME_REASON,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Resume a paused or open carrier; workers then release its held texts, oldest first."""
    ops = _operations()
    outcome = ops.resume_carrier(name, who=by or operator(), reason=reason, campaign=campaign)
    _carrier_result(outcome, as_json)
    _announce(ops, outcome)


@carriers_app.command("history")
def carriers_history(
    name: Annotated[str, typer.Argument(help="carrier or carrier:campaign")],
    limit: LimitOption = DEFAULT_HISTORY_COUNT,
    as_json: JsonFlag = False,
) -> None:
    """Every transition of a carrier's breakers: who, why, when (newest first)."""
    entries = _operations().carrier_history(name, limit)
    if as_json:
        emit({"history": entries})
        return
    _print_history(entries)


def _carrier_result(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        emit({"changed": [c.as_dict() for c in outcome.changes]})
    else:
        _print_changes(outcome)


# -- providers -----------------------------------------------------------------


@providers_app.command("status")
def providers_status(as_json: JsonFlag = False) -> None:
    """Each routed provider's breaker: state, why, window counts."""
    rows = _operations().provider_status()
    if as_json:
        emit({"providers": rows})
        return
    table = Table("provider", "state", "since", "calls", "failures", "why", "by")
    for r in rows:
        counts = (str(r["window_calls"]), str(r["window_failures"]))
        table.add_row(r["name"], r["state"], _clock(r["since_ms"]), *counts, r["why"], r["by"])
    out.print(table)


@providers_app.command("pause")
def providers_pause(
    name: str, reason: PauseReason, by: ByOption = None, as_json: JsonFlag = False
) -> None:
    """Take a provider out of rotation until an operator resumes it."""
    ops = _operations()
    with _refusals(as_json):
        outcome = ops.pause_provider(name, reason=reason, who=by or operator())
    _provider_result(outcome, as_json)
    _announce(ops, outcome)


@providers_app.command("resume")
def providers_resume(
    name: str,
    reason: ResumeReason = DEFAULT_RESUME_REASON,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Put a paused or open provider back into rotation."""
    ops = _operations()
    with _refusals(as_json):
        outcome = ops.resume_provider(name, who=by or operator(), reason=reason)
    _provider_result(outcome, as_json)
    _announce(ops, outcome)


@providers_app.command("history")
def providers_history(
    name: str, limit: LimitOption = DEFAULT_HISTORY_COUNT, as_json: JsonFlag = False
) -> None:
    """Every transition of a provider's breaker: who, why, when (newest first)."""
    ops = _operations()
    with _refusals(as_json):
        entries = ops.provider_history(name, limit)
    if as_json:
        emit({"history": entries})
        return
    _print_history(entries)


def _provider_result(outcome: Outcome, as_json: bool) -> None:
    # A provider action touches exactly one breaker: answered as one object.
    if as_json:
        emit(outcome.changes[0].as_dict())
    else:
        _print_changes(outcome)
