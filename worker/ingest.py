"""Reading texts to enqueue from CSV or JSONL files (or stdin), one row at a time.

CSV: a header row naming the columns; ``to`` is required, and ``body`` unless
a template builds it. ``campaign``, ``key`` and ``send_before`` are optional;
every other column goes into ``metadata`` (and into template fields). A UTF-8
BOM is ignored; header names are matched without case or surrounding space.
Rows end where csv.reader's default (excel) dialect ends them: a quote opens a
quoted field only as the field's first character (``Our 5" sale`` is plain
text), and a quoted field may hold commas, doubled quotes and newlines.

JSONL: one JSON object per line with the same keys; unknown keys go into
``metadata``.

The reader streams, in one pass: a million-row file is never held in memory.
A bad row (bad encoding, wrong column count, a line or a row over 1 MiB, a
quoted field never closed, bad JSON, a template field with no column) is
yielded as a Row with the reason and its line number, and reading goes on.
Only a file that cannot be read at all raises FileError.
"""

from __future__ import annotations

import csv
import io
import json
import re
import string
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

# FileError: the whole file is unusable (re-exported: callers catch it from here).
from worker.errors import FileError as FileError

DEFAULT_MAX_LINE_BYTES = 1024 * 1024
# A record over several lines (a quoted field with newlines) has the same limit.
MAX_ROW_BYTES = DEFAULT_MAX_LINE_BYTES
LINE_TOO_LONG = "line is longer than 1 MiB"
# A line that leaves no quoted field open, in csv's excel dialect (csv.reader's
# default): fields split by commas, each unquoted, where a quote after the first
# character is only a character (Our 5" sale), or quoted, where "" is a quote and
# what follows the closing quote up to the comma is plain text (non-strict csv).
# Possessive quantifiers never backtrack: each line is matched in linear time.
_QUOTED = r'"(?:[^"]|"")*+"(?:[^,"][^,]*+)?'
_FIELD = rf'(?:{_QUOTED}|[^,"][^,]*+|)'
_CLOSED = re.compile(rf"{_FIELD}(?:,{_FIELD})*+")
_CLOSED_FROM_QUOTED = re.compile(rf'(?:[^"]|"")*+"(?:[^,"][^,]*+)?(?:,{_FIELD})*+')
KNOWN_FIELDS = ("to", "body", "campaign", "key", "send_before")
REQUIRED_FIELDS = ("to", "body")
Format = Literal["csv", "jsonl"]


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    fields: dict[str, Any] | None
    error: str | None


class Template:
    """A body template with ``{column}`` fields; ``{{`` and ``}}`` are literal braces."""

    def __init__(self, text: str) -> None:
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise FileError("--template", f"is not a valid template ({exc})") from None
        self.fields = [name for _, name, _, _ in parsed if name is not None]
        for name in self.fields:
            if not name.isidentifier():
                raise FileError("--template", f"field {{{name}}} must be a plain column name")
        self.text = text

    def render(self, values: dict[str, Any]) -> str:
        missing = [n for n in self.fields if n not in values]
        if missing:
            raise KeyError(missing[0])
        return self.text.format_map({n: values[n] for n in self.fields})


def read_rows(
    source: str | Path,
    *,
    fmt: Format | None = None,
    template: str | None = None,
    stdin: BinaryIO | None = None,
) -> Iterator[Row]:
    """Rows of the file, in order. Raises FileError before the first row if unusable."""
    tmpl = Template(template) if template else None
    name = str(source)
    handle = open_source(source, stdin)
    first = peek(handle)
    if not first.strip():
        raise FileError(name, "is empty")
    fmt = fmt or _format_of(name, first)
    lines = lines_of(handle)
    if fmt == "csv":
        return _csv_rows(name, lines, tmpl)
    return _jsonl_rows(lines, tmpl)


def open_source(source: str | Path, stdin: BinaryIO | None) -> io.BufferedReader:
    if str(source) == "-":
        stream = stdin or sys.stdin.buffer
        return io.BufferedReader(stream) if not isinstance(stream, io.BufferedReader) else stream  # type: ignore[arg-type]
    path = Path(source)
    if path.is_dir():
        raise FileError(str(path), "is a directory, not a file")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise FileError(str(path), "does not exist") from None
    except OSError as exc:
        raise FileError(str(path), f"cannot be read ({exc.strerror})") from None


def peek(handle: io.BufferedReader) -> bytes:
    return handle.peek(4096)[:4096]


def _format_of(name: str, first: bytes) -> Format:
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "jsonl" if first.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def lines_of(handle: io.BufferedReader) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw line) pairs; None for a line over the size limit (skipped whole)."""
    line_no = 0
    while True:
        raw = handle.readline(DEFAULT_MAX_LINE_BYTES + 1)
        if not raw:
            return
        line_no += 1
        if len(raw) > DEFAULT_MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # drain the rest of the huge line
                raw = handle.readline(DEFAULT_MAX_LINE_BYTES)
            yield line_no, None
            continue
        yield line_no, raw


def _decode(raw: bytes, line_no: int) -> str | Row:
    if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Row(line_no, None, f"not valid UTF-8 at byte {exc.start + 1}")


def _csv_rows(
    name: str, lines: Iterator[tuple[int, bytes | None]], tmpl: Template | None
) -> Iterator[Row]:
    records = csv_records(lines)
    header = _csv_header(name, records, tmpl)
    return _csv_body(header, records, tmpl)


def _csv_header(name: str, records: Iterator[Record | Row], tmpl: Template | None) -> list[str]:
    for record in records:
        if isinstance(record, Row):
            raise FileError(name, header_problem(record))
        try:
            header = [h.strip() for h in next(csv.reader([record[1]]))]
        except csv.Error as exc:
            raise FileError(name, f"the header is not valid CSV ({exc})") from None
        header = [h.lower() if h.lower() in KNOWN_FIELDS else h for h in header]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise FileError(name, f"the header names {dupes[0]!r} twice")
        if "to" not in header:
            raise FileError(name, "the header has no 'to' column")
        if "body" not in header and tmpl is None:
            raise FileError(name, "the header has no 'body' column (or give --template)")
        return header
    raise FileError(name, "has no header row")


def header_problem(row: Row) -> str:
    reason = row.error or "unreadable"
    if reason == LINE_TOO_LONG:
        return f"line {row.line} (the header) is longer than 1 MiB"
    if reason.startswith("not valid"):
        return f"the header is {reason}"
    return f"the header (line {row.line}): {reason}"


def _csv_body(
    header: list[str], records: Iterator[Record | Row], tmpl: Template | None
) -> Iterator[Row]:
    for record in records:
        yield record if isinstance(record, Row) else _csv_row(header, record[1], record[0], tmpl)


# A whole CSV record: its first line's number and its text (one line or several).
Record = tuple[int, str]


def csv_records(lines: Iterator[tuple[int, bytes | None]]) -> Iterator[Record | Row]:
    """The file's records in order, each whole, or a Row saying why one cannot be read.

    A record ends where csv's excel dialect ends it (``_quote_open_after``), so a
    quote inside an unquoted field cannot swallow the lines after it. Each line is
    scanned once and a record of several lines decoded once: linear in the file.
    Blank lines between records are skipped; line numbers stay physical.
    """
    open_: _Open | None = None  # a record whose quoted field goes on past its line
    for line_no, raw in lines:
        text = _decode(raw, line_no) if raw is not None else Row(line_no, None, LINE_TOO_LONG)
        if isinstance(text, Row):
            if open_ is not None:
                # The open quoted field cannot go on through an unreadable line:
                # its record ends here, reported before this line, in order.
                why = "not valid UTF-8" if raw is not None else "longer than 1 MiB"
                yield Row(
                    open_.start, None, f"a quoted field runs into line {line_no}, which is {why}"
                )
                open_ = None
            yield text
        elif open_ is not None:
            if not open_.add(line_no, text, raw or b""):
                yield open_.record()
                open_ = None
        elif '"' in text and _quote_open_after(text, False):
            open_ = _Open(line_no, text)
        elif text and not text.isspace():
            yield line_no, text
    if open_ is not None:
        yield Row(
            open_.start,
            None,
            f"a quoted field is never closed (it runs from line {open_.start} to the end,"
            f" line {open_.end})",
        )


class _Open:
    """A record over several lines, gathered until its quoted field closes.

    The lines are kept as UTF-8 in one bytearray (amortised O(1) appends, a byte
    a byte; a list of line strings costs ~50 bytes a line) up to MAX_ROW_BYTES;
    past that only the quote state is followed, to find where the record ends.
    """

    __slots__ = ("buffer", "end", "size", "start")

    def __init__(self, line_no: int, text: str) -> None:
        data = text.encode()  # decoded text: line 1's BOM is already gone
        self.start = self.end = line_no
        self.size = len(data)
        self.buffer: bytearray | None = bytearray(data)

    def add(self, line_no: int, text: str, raw: bytes) -> bool:
        """Take the next line; whether the quoted field is still open after it."""
        self.end, self.size = line_no, self.size + len(raw)
        if self.size > MAX_ROW_BYTES:
            self.buffer = None
        elif self.buffer is not None:
            self.buffer += raw
        return _quote_open_after(text, True)

    def record(self) -> Record | Row:
        if self.buffer is None:
            why = f"row is longer than 1 MiB (lines {self.start} to {self.end})"
            return Row(self.start, None, why)
        return self.start, self.text()

    def text(self) -> str:
        return self.buffer.decode() if self.buffer is not None else ""


def _quote_open_after(line: str, quoted: bool) -> bool:
    """Whether a quoted field is still open at the end of ``line``, as csv.reader sees it.

    ``quoted``: the line starts inside one. One regular-expression match, in C.
    """
    if not quoted and '"' not in line:
        return False
    return (_CLOSED_FROM_QUOTED if quoted else _CLOSED).fullmatch(line) is None


def _csv_row(header: list[str], text: str, line_no: int, tmpl: Template | None) -> Row:
    try:
        cells = next(csv.reader([text]))
    except csv.Error as exc:
        return Row(line_no, None, f"not valid CSV ({exc})")
    if len(cells) != len(header):
        return Row(line_no, None, f"row has {len(cells)} columns; the header has {len(header)}")
    values = dict(zip(header, cells, strict=True))
    return _to_row(values, line_no, tmpl)


def _jsonl_rows(lines: Iterator[tuple[int, bytes | None]], tmpl: Template | None) -> Iterator[Row]:
    for line_no, raw in lines:
        if raw is None:
            yield Row(line_no, None, LINE_TOO_LONG)
            continue
        text = _decode(raw, line_no)
        if isinstance(text, Row):
            yield text
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Row(line_no, None, f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        except ValueError as exc:  # an integer too long to convert
            yield Row(line_no, None, f"invalid JSON: {exc}"[:200])
            continue
        except RecursionError:
            yield Row(line_no, None, "invalid JSON: nested too deeply")
            continue
        if not isinstance(value, dict):
            yield Row(line_no, None, f"not a JSON object (a {type(value).__name__})")
            continue
        yield _to_row(value, line_no, tmpl)


def _to_row(values: dict[str, Any], line_no: int, tmpl: Template | None) -> Row:
    given = values.get("metadata")
    if "metadata" in values and not isinstance(given, dict):
        return Row(line_no, None, "metadata: must be an object")
    metadata: dict[str, Any] = dict(given) if given else {}  # a copy: ours to add to
    fields: dict[str, Any] = {}
    for name, value in values.items():
        if name in REQUIRED_FIELDS:
            # Kept even when blank, so the job says "is empty", as --body "" does,
            # rather than that a field the row plainly has is missing.
            fields[name] = value
        elif name in KNOWN_FIELDS:
            if value not in ("", None):
                fields[name] = value
        elif name != "metadata":
            metadata[name] = value
    if metadata:
        fields["metadata"] = metadata
    if tmpl is not None:
        try:
            fields["body"] = tmpl.render({**metadata, **fields})
        except KeyError as exc:
            return Row(line_no, None, f"template field {{{exc.args[0]}}} has no column")
    return Row(line_no, fields, None)


def write_rejects(path: Path, rejects: Iterable[tuple[int, str]]) -> None:
    """A CSV of ``line,reason`` for every rejected row."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "reason"])
        writer.writerows(rejects)


def count_lines(path: Path) -> int | None:
    """Lines in the file (for a progress bar's total); None when it cannot tell."""
    try:
        with path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return None
