"""Opt-out files: reading a CSV of numbers to import, writing the list out as CSV.

Import: a header row with a ``number``, ``phone`` or ``to`` column (the first of
these it has; case and surrounding space ignored); other columns are ignored. Rows
are read as ``sendq enqueue --file`` reads them (worker/ingest.py: a UTF-8 BOM is
ignored, quoted fields may span lines, an unreadable row is reported with its
line and reading goes on), one at a time: a million-line file is never held.
Only a file that cannot be read at all raises FileError.

Export: ``number,opted_out_at,source,by``, the time in UTC ISO 8601.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from worker import ingest
from worker.errors import FileError

NUMBER_COLUMNS = ("number", "phone", "to")
EXPORT_HEADER = ("number", "opted_out_at", "source", "by")


@dataclass(frozen=True, slots=True)
class NumberRow:
    line: int
    text: str  # the number as written ("" when the row has no value for it)
    error: str | None = None  # why the row could not be read at all


@dataclass(frozen=True, slots=True)
class NumberFile:
    column: str  # the header's name for the number column, as written
    rows: Iterator[NumberRow]


def read_numbers(source: str | Path, *, stdin: BinaryIO | None = None) -> NumberFile:
    """The file's number column, row by row; FileError at once if it is unusable."""
    name = str(source)
    handle = ingest.open_source(source, stdin)
    if not ingest.peek(handle).strip():
        raise FileError(name, "is empty")
    records = ingest.csv_records(ingest.lines_of(handle))
    header, line = _header(name, records)
    index = _number_column(name, header, line)
    return NumberFile(header[index].strip(), _rows(records, index))


def _header(name: str, records: Iterator[ingest.Record | ingest.Row]) -> tuple[list[str], int]:
    for record in records:
        if isinstance(record, ingest.Row):
            raise FileError(name, ingest.header_problem(record))
        line, text = record
        try:
            return next(csv.reader([text])), line
        except (csv.Error, StopIteration) as exc:
            raise FileError(name, f"the header is not valid CSV ({exc})") from None
    raise FileError(name, "has no header row")


def _number_column(name: str, header: list[str], line: int) -> int:
    names = [h.strip().lower() for h in header]
    for wanted in NUMBER_COLUMNS:
        if wanted in names:
            return names.index(wanted)
    shown = ", ".join(repr(h) for h in header[:10])
    raise FileError(
        name,
        f"the header (line {line}) has no number column; it needs one named "
        f"{', '.join(NUMBER_COLUMNS[:-1])} or {NUMBER_COLUMNS[-1]} (it has {shown})",
    )


def _rows(records: Iterator[ingest.Record | ingest.Row], index: int) -> Iterator[NumberRow]:
    for record in records:
        if isinstance(record, ingest.Row):
            yield NumberRow(record.line, "", record.error or "unreadable row")
            continue
        line, text = record
        try:
            fields = next(csv.reader([text]))
        except (csv.Error, StopIteration) as exc:
            yield NumberRow(line, "", f"not valid CSV ({exc})")
            continue
        yield NumberRow(line, fields[index] if index < len(fields) else "")


def write_export(
    entries: Iterable[tuple[str, dict[str, Any]]], handle: IO[str], flush_every: int = 1000
) -> int:
    """Write the CSV, flushing every ``flush_every`` rows; how many numbers were written."""
    writer = csv.writer(handle)
    writer.writerow(EXPORT_HEADER)
    count = 0
    for number, entry in entries:
        writer.writerow([number, iso_utc(entry.get("at_ms")), entry.get("source", ""),
                         entry.get("by", "")])  # fmt: skip
        count += 1
        if count % flush_every == 0:
            handle.flush()
    handle.flush()
    return count


def iso_utc(at_ms: object) -> str:
    """An entry's epoch ms as UTC ISO 8601, to the second; "" without one."""
    if not isinstance(at_ms, int | float) or not at_ms:
        return ""
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
