"""``sendq optouts``: add, remove, check, import, export, review, audit.

The list is per organisation: ``--org`` names one the config knows (default_org,
an [orgs.NAME] section, or a campaign's org); without it, default_org. Numbers are
read as ``sendq enqueue`` reads them (default_region for a national number).
Terminal output masks numbers, as ``sendq messages show`` does; ``--json`` and
files carry them whole, for the operator's own use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from worker.cli.common import ByOption, JsonFlag, connected, emit, err, fail, operator, out
from worker.errors import InvalidInput

if TYPE_CHECKING:
    from worker.optouts import ImportLine, OptoutList

app = typer.Typer(
    help="Opt-out lists: add, remove, check, import, export, review, audit.",
    no_args_is_help=True,
)

NumberArg = Annotated[str, typer.Argument(help="The number, E.164 or national.")]
OrgOption = Annotated[str | None, typer.Option(help="Organisation (default: default_org).")]
# Rejected lines listed on the terminal (all go to --rejects) and in the JSON summary.
SHOWN_REJECTS = 50
JSON_REJECTS = 1000


class _Context:
    """What every command needs: the list, the organisation, the region."""

    def __init__(self, org: str | None, as_json: bool) -> None:
        from worker.optouts import check_org

        self.as_json = as_json
        self.optouts: OptoutList = connected(lambda root: root.optouts())
        settings = connected(lambda root: root.settings)
        self.region = settings.default_region
        name = org or settings.default_org
        try:
            self.org = check_org(name)
        except InvalidInput as exc:
            _refuse(str(exc), 1, as_json)
        known = {settings.default_org, *settings.orgs}
        known |= {c.org for c in settings.campaigns.values() if c.org}
        if self.org not in known:
            _refuse(
                f"unknown organisation {self.org!r}; known: {', '.join(sorted(known))} "
                f"(name it in [orgs.NAME] or a campaign's org)",
                2,
                as_json,
            )

    def number(self, raw: str) -> str:
        from worker.phone import to_e164

        try:
            return to_e164(raw, self.region)
        except InvalidInput as exc:
            _refuse(f"number: {exc.reason}", 1, self.as_json)


def _refuse(message: str, code: int, as_json: bool) -> NoReturn:
    """fail(), with the message shown as written: it names files and [sections]."""
    fail(message if as_json else escape(message), code, as_json=as_json)


def _masked(number: str) -> str:
    from worker.phone import mask

    return mask(number)


def _when(at_ms: object) -> str:
    from worker.optout_files import iso_utc

    return iso_utc(at_ms)


def _cause(cause: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cause.items() if v)


@app.command("add")
def optouts_add(
    number: NumberArg,
    org: OrgOption = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit record).")] = "",
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Opt a number out of every campaign of the organisation."""
    from worker.optouts import Source, operator_cause

    ctx = _Context(org, as_json)
    e164 = ctx.number(number)
    cause = operator_cause(reason or "added by an operator")
    added = ctx.optouts.add(ctx.org, e164, source=Source.OPERATOR, by=by or operator(), cause=cause)
    if as_json:
        emit({"org": ctx.org, "number": e164, "added": added})
    else:
        print(f"{_masked(e164)}: opted out of {ctx.org}" + ("" if added else " (already)"))


@app.command("remove")
def optouts_remove(
    number: NumberArg,
    reason: Annotated[str, typer.Option(help="Why the person may be texted again.")],
    org: OrgOption = None,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Opt a number back in. Only the person may ask for this: say how in --reason."""
    from worker.optouts import Source, operator_cause

    ctx = _Context(org, as_json)
    if not reason.strip():
        fail("--reason must say how the person asked to be texted again", 2, as_json=as_json)
    e164 = ctx.number(number)
    cause = operator_cause(reason)
    who = by or operator()
    removed = ctx.optouts.remove(ctx.org, e164, source=Source.OPERATOR, by=who, cause=cause)
    if as_json:
        emit({"org": ctx.org, "number": e164, "removed": removed})
    else:
        print(f"{_masked(e164)}: " + ("opted back in" if removed else "was not opted out"))


@app.command("check")
def optouts_check(number: NumberArg, org: OrgOption = None, as_json: JsonFlag = False) -> None:
    """Whether a number is opted out: when, how, by whom and why; or flagged for review."""
    ctx = _Context(org, as_json)
    e164 = ctx.number(number)
    entry = ctx.optouts.entry(ctx.org, e164)
    flagged = None if entry else ctx.optouts.flag_of(ctx.org, e164)
    if as_json:
        opted_out = entry is not None
        emit(
            {
                "org": ctx.org,
                "number": e164,
                "opted_out": opted_out,
                "entry": entry,
                "flagged": flagged,
            }
        )
        return
    if entry is None:
        print(f"{_masked(e164)}: not opted out of {ctx.org}")
        if flagged:
            print(f"  flagged for review: {flagged.get('body', '')!r} (sendq optouts review)")
        return
    print(f"{_masked(e164)}: opted out of {ctx.org}")
    print(f"  since  {_when(entry.get('at_ms'))}")
    print(f"  source {entry.get('source', '')}, by {entry.get('by', '')}")
    print(f"  cause  {_cause(entry.get('cause') or {})}")


@app.command("import")
def optouts_import(
    file: Annotated[
        str, typer.Argument(help="CSV with a number, phone or to column; - for stdin.")
    ],
    org: OrgOption = None,
    rejects: Annotated[
        Path | None, typer.Option(help="Write rejected lines (line, reason) to this CSV.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Opt out every number in a file. Only adds: a file never opts anyone back in."""
    from worker import ingest, optout_files

    ctx = _Context(org, as_json)
    try:
        numbers = optout_files.read_numbers(file)
    except InvalidInput as exc:
        _refuse(str(exc), 1, as_json)
    unreadable: list[tuple[int, str]] = []

    def rows() -> Iterator[tuple[int, str]]:
        for row in numbers.rows:
            if row.error is not None:
                unreadable.append((row.line, row.error))
            else:
                yield row.line, row.text

    total = None if file == "-" else ingest.count_lines(Path(file))
    with _Progress(total, enabled=not as_json and sys.stderr.isatty()) as advance:
        report = ctx.optouts.import_rows(
            ctx.org, rows(), by=f"import:{file}", region=ctx.region, on_batch=advance
        )
    rejected = sorted(
        unreadable + [(r.line, f"{numbers.column}: {r.reason}") for r in report.rejected]
    )
    if rejects is not None:
        ingest.write_rejects(rejects, rejected)
    _import_summary(ctx.org, report.added, report.already, rejected, rejects, as_json)
    if rejected and not (report.added or report.already):
        raise typer.Exit(1)


def _import_summary(
    org: str,
    added: int,
    already: int,
    rejected: list[tuple[int, str]],
    path: Path | None,
    as_json: bool,
) -> None:
    if as_json:
        emit(
            {
                "org": org,
                "added": added,
                "already": already,
                "rejected": len(rejected),
                "rejects": [{"line": n, "reason": why} for n, why in rejected[:JSON_REJECTS]],
            }
        )
        return
    for line, reason in rejected[:SHOWN_REJECTS]:
        err.print(f"line {line}: {reason}", highlight=False, markup=False)
    if len(rejected) > SHOWN_REJECTS:
        more = len(rejected) - SHOWN_REJECTS
        err.print(f"... and {more} more" + (f" (all in {path})" if path else ""))
    out.print(f"{org}: opted out {added}, already {already}, rejected {len(rejected)}")


class _Progress:
    """A progress bar on stderr for a terminal; nothing otherwise."""

    def __init__(self, total: int | None, *, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self._bar: Any = None

    def __enter__(self) -> Callable[[list[ImportLine]], None] | None:
        if not self.enabled:
            return None
        from rich.progress import Progress

        self._bar = Progress(console=err, transient=True)
        self._bar.start()
        task = self._bar.add_task("importing", total=self.total)
        return lambda lines: self._bar.advance(task, len(lines))

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


@app.command("export")
def optouts_export(
    org: OrgOption = None,
    output: Annotated[
        Path | None, typer.Option(help="Write the CSV here (default: stdout).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the list as CSV (number,opted_out_at,source,by), in chunks."""
    from worker.optout_files import write_export

    if as_json and output is None:
        fail("--json needs --output: the CSV itself goes to stdout", 2, as_json=True)
    ctx = _Context(org, as_json)
    if output is None:
        try:
            write_export(ctx.optouts.export(ctx.org), sys.stdout)
        except BrokenPipeError:
            # The reader went away (| head): stop quietly, as other tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    # Written beside the target, then moved: an interrupted export leaves no half file.
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("w", newline="", encoding="utf-8") as handle:
            count = write_export(ctx.optouts.export(ctx.org), handle)
        os.replace(partial, output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        _refuse(f"{output}: cannot be written ({exc.strerror})", 1, as_json)
    if as_json:
        emit({"org": ctx.org, "exported": count, "output": str(output)})
    else:
        err.print(f"{ctx.org}: exported {count} numbers to {escape(str(output))}")


@app.command("review")
def optouts_review(
    org: OrgOption = None,
    confirm: Annotated[
        str | None, typer.Option(help="Opt out a flagged number (or its inbound id).")
    ] = None,
    dismiss: Annotated[
        str | None, typer.Option(help="Drop a flag, leaving the number opted in.")
    ] = None,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Possible opt-outs flagged for review (with optouts.possible = "flag")."""
    if confirm and dismiss:
        fail("give either --confirm or --dismiss, not both", 2, as_json=as_json)
    ctx = _Context(org, as_json)
    if confirm or dismiss:
        _decide(ctx, confirm, dismiss, by or operator())
        return
    rows = ctx.optouts.review(ctx.org)
    if as_json:
        emit({"org": ctx.org, "flagged": rows})
        return
    table = Table("number", "flagged at", "text", "rule", "inbound id", title=f"{ctx.org}: review")
    for r in rows:
        cause = r.get("cause") or {}
        when, body = _when(r.get("at_ms")), escape(r.get("body", ""))
        table.add_row(
            _masked(r["number"]), when, body, r.get("rule", ""), cause.get("inbound_id", "")
        )
    out.print(table)


def _decide(ctx: _Context, confirm: str | None, dismiss: str | None, who: str) -> None:
    target = confirm or dismiss or ""
    number = _flagged_number(ctx, target)
    if confirm:
        added = ctx.optouts.confirm(ctx.org, number, by=who)
        done = None if added is None else "opted out" if added else "already opted out"
    else:
        done = "dismissed" if ctx.optouts.dismiss(ctx.org, number, who) else None
    if done is None:
        fail(f"{_masked(number)} is not flagged for review in {ctx.org}", 1, as_json=ctx.as_json)
    if ctx.as_json:
        emit({"org": ctx.org, "number": number, "result": done.replace(" ", "_")})
    else:
        print(f"{_masked(number)}: {done}")


def _flagged_number(ctx: _Context, target: str) -> str:
    """A number as given, or the number whose flag names this inbound id."""
    for row in ctx.optouts.review(ctx.org):
        if (row.get("cause") or {}).get("inbound_id") == target:
            return str(row["number"])
    return ctx.number(target)


@app.command("audit")
def optouts_audit(
    org: Annotated[str | None, typer.Option(help="One organisation (default: all).")] = None,
    limit: Annotated[int, typer.Option(help="Entries to show.", min=1)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Every change of the lists, newest first: what, who, when, why."""
    optouts: OptoutList = connected(lambda root: root.optouts())
    try:
        entries = optouts.audit(org, count=limit)
    except InvalidInput as exc:
        _refuse(str(exc), 1, as_json)
    if as_json:
        emit({"audit": entries})
        return
    table = Table("when", "org", "change", "number", "source", "by", "cause")
    for e in entries:
        what = (e.get("org", ""), e.get("op", ""), _masked(e["number"]), e.get("source", ""))
        table.add_row(_when(e["at_ms"]), *what, escape(e.get("by", "")), escape(_cause(e["cause"])))
    out.print(table)
