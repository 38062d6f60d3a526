"""``sendq enqueue``: one text (--to/--body) or a file of texts (--file)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.cli.common import JsonFlag, connected, emit, err, fail, out
from worker.errors import InvalidInput

if TYPE_CHECKING:
    from worker import ingest
    from worker.enqueue import EnqueueReport, Producer

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
    if as_json:
        emit({"message_id": accepted.message_id, "duplicate": accepted.duplicate})
    else:
        print(accepted.message_id)
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
    if rejects_path is not None:
        ingest.write_rejects(rejects_path, rejected)
    _file_summary(report, rejected, rejects_path, as_json)
    if rejected and not report.accepted:
        raise typer.Exit(1)


def _chain(first: ingest.Row | None, rest: Iterator[ingest.Row]) -> Iterator[ingest.Row]:
    if first is not None:
        yield first
    yield from rest


def _file_summary(
    report: EnqueueReport, rejected: list[tuple[int, str]], path: Path | None, as_json: bool
) -> None:
    summary = {
        "accepted": report.queued,
        "duplicates": report.duplicates,
        "rejected": len(rejected),
        "rejects": [{"line": line, "reason": reason} for line, reason in rejected[:JSON_REJECTS]],
    }
    if as_json:
        emit(summary)
        return
    for line, reason in rejected[:SHOWN_REJECTS]:
        err.print(f"line {line}: {reason}", highlight=False, markup=False)
    if len(rejected) > SHOWN_REJECTS:
        more = len(rejected) - SHOWN_REJECTS
        err.print(f"... and {more} more" + (f" (all in {path})" if path else ""))
    out.print(f"accepted {report.queued}, duplicates {report.duplicates}, rejected {len(rejected)}")


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
