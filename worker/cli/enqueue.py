"""``sendq enqueue``: one text (--to/--body) or a file of texts (--file)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.cli.common import JsonFlag, connected, emit, err, fail, out, say_error
from worker.errors import InvalidInput

if TYPE_CHECKING:
    from worker import ingest
    from worker.producer import Accepted, Conflict, EnqueueReport, Producer

# Rejected rows listed on the terminal (all go to --rejects) and in the JSON summary.
SHOWN_REJECTS = 50
JSON_REJECTS = 1000


def register(app: typer.Typer) -> None:
    app.command()(enqueue)


def enqueue(
    to: Annotated[str | None, typer.Option(help="Recipient, E.164 or national.")] = None,
    body: Annotated[str | None, typer.Option(help="The text.")] = None,
    campaign: Annotated[str | None, typer.Option(help="Campaign name.")] = None,
    key: Annotated[str | None, typer.Option(help="Idempotency key.")] = None,
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="CSV or JSONL file of texts; - for stdin.")
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="Body template with {column} fields (with --file).")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: by name).")
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option(help="Write rejected rows (line, reason) to this CSV.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue one text (--to/--body) or a file of texts (--file)."""
    if file is not None:
        if to or body:
            fail("give either --file or --to/--body, not both", 2, as_json=as_json)
        _enqueue_file(file, template, fmt, campaign, rejects, as_json)
        return
    if not to or body is None:
        fail("--to and --body are required (or --file)", 2, as_json=as_json)
    _enqueue_one(to, body, campaign, key, as_json)


def _producer() -> Producer:
    return connected(lambda root: root.producer())


def _enqueue_one(to: str, body: str, campaign: str | None, key: str | None, as_json: bool) -> None:
    from pydantic import ValidationError

    from worker.models import describe_validation_error

    job = {"to": to, "body": body, "campaign": campaign, "key": key}
    try:
        accepted = _producer().enqueue(job)
    except ValidationError as exc:
        fail(f"rejected: {describe_validation_error(exc)}", 1, as_json=as_json)
    if accepted.conflict is not None:
        # Not queued: saying "duplicate" and printing the id would read as success.
        reason = f"{conflict_reason(accepted.conflict)}; nothing was queued"
        if as_json:
            emit({"error": reason, "message_id": accepted.message_id, "conflict": True})
        else:
            from rich.markup import escape

            say_error(escape(reason))  # the key is the user's text, not markup
        raise typer.Exit(1)
    if as_json:
        emit(
            {
                "message_id": accepted.message_id,
                "duplicate": accepted.duplicate,
                "suppressed": accepted.suppressed,
            }
        )
    else:
        print(accepted.message_id)
        if accepted.suppressed:
            err.print(f"(suppressed: {SUPPRESSED_REASON})")
        if accepted.duplicate:
            err.print("(duplicate key: the existing message id)")


def _enqueue_file(
    source: str,
    template: str | None,
    fmt: str | None,
    campaign: str | None,
    rejects_path: Path | None,
    as_json: bool,
) -> None:
    from worker import ingest

    if fmt not in (None, "csv", "jsonl"):
        fail(f"--format must be csv or jsonl, not {fmt!r}", 2, as_json=as_json)
    producer = _producer()
    try:
        rows = ingest.read_rows(source, fmt=fmt, template=template)  # type: ignore[arg-type]
        first = next(rows, None)
    except InvalidInput as exc:
        fail(str(exc), 1, as_json=as_json)
    rejected: list[tuple[int, str]] = []
    lines: list[int] = []

    def jobs() -> Iterator[dict[str, Any]]:
        for row in _chain(first, rows):
            if row.fields is None:
                rejected.append((row.line, row.error or "unreadable row"))
                continue
            if campaign and not row.fields.get("campaign"):
                row.fields["campaign"] = campaign
            lines.append(row.line)
            yield row.fields

    total = None if source == "-" else ingest.count_lines(Path(source))
    with _Progress(total, enabled=not as_json and sys.stderr.isatty()) as advance:
        report = producer.enqueue_many(jobs(), on_batch=advance)
    rejected += [(lines[r.index], r.reason) for r in report.rejected]
    rejected.sort()
    conflicts = [_conflict_entry(a, lines) for a in report.conflicts]
    suppressed = [(lines[a.index], a.message_id) for a in report.suppressed]
    if rejects_path is not None:
        # Every row to fix, conflicts too: each needs a key of its own (or its first text).
        ingest.write_rejects(rejects_path, sorted(rejected + [_listed(c) for c in conflicts]))
    _file_summary(report, rejected, conflicts, suppressed, rejects_path, as_json)
    if (rejected or conflicts) and not (report.queued or report.duplicates):
        raise typer.Exit(1)


# A suppressed row is recorded (its id is in the report) but never sent.
SUPPRESSED_REASON = "the recipient opted out (on the organisation's opt-out list); not sent"


def conflict_reason(conflict: Conflict, earlier_line: int | None = None) -> str:
    """Why a row under a used key queued nothing, naming where the key was used first."""
    what = " and ".join("number" if name == "to" else name for name in conflict.differs)
    where = f"line {earlier_line}" if earlier_line is not None else "an earlier run"
    return f"key {conflict.key!r} was used by {where} for another {what}; the first is kept"


def _conflict_entry(accepted: Accepted, lines: list[int]) -> dict[str, Any]:
    conflict = accepted.conflict
    assert conflict is not None
    earlier = None if conflict.earlier_index is None else lines[conflict.earlier_index]
    return {
        "line": lines[accepted.index],
        "key": conflict.key,
        "earlier_line": earlier,
        "differs": list(conflict.differs),
        "message_id": accepted.message_id,
        "reason": conflict_reason(conflict, earlier),
    }


def _listed(conflict: dict[str, Any]) -> tuple[int, str]:
    return conflict["line"], f"conflict: {conflict['reason']}"


def _chain(first: ingest.Row | None, rest: Iterator[ingest.Row]) -> Iterator[ingest.Row]:
    if first is not None:
        yield first
    yield from rest


def _file_summary(
    report: EnqueueReport,
    rejected: list[tuple[int, str]],
    conflicts: list[dict[str, Any]],
    suppressed: list[tuple[int, str]],
    path: Path | None,
    as_json: bool,
) -> None:
    if as_json:
        emit(
            {
                "accepted": report.queued,
                "duplicates": report.duplicates,
                "suppressed": len(suppressed),
                "suppressed_rows": [
                    {"line": n, "message_id": m, "reason": SUPPRESSED_REASON}
                    for n, m in suppressed[:JSON_REJECTS]
                ],
                "conflicted": len(conflicts),
                "rejected": len(rejected),
                "rejects": [{"line": n, "reason": why} for n, why in rejected[:JSON_REJECTS]],
                "conflicts": conflicts[:JSON_REJECTS],
            }
        )
        return
    listed = sorted(
        rejected
        + [_listed(c) for c in conflicts]
        + [(n, f"suppressed: {SUPPRESSED_REASON}") for n, _ in suppressed]
    )
    for line, reason in listed[:SHOWN_REJECTS]:
        err.print(f"line {line}: {reason}", highlight=False, markup=False)
    if len(listed) > SHOWN_REJECTS:
        more = len(listed) - SHOWN_REJECTS
        err.print(f"... and {more} more" + (f" (all in {path})" if path else ""))
    out.print(
        f"accepted {report.queued}, duplicates {report.duplicates}, "
        f"suppressed {len(suppressed)}, conflicts {len(conflicts)}, rejected {len(rejected)}"
    )


class _Progress:
    """A rich progress bar on a TTY; silent otherwise."""

    def __init__(self, total: int | None, *, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import Progress

        self._bar = Progress(console=err, transient=True)
        self._bar.start()
        task = self._bar.add_task("enqueueing", total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
