"""Reading texts to enqueue from CSV or JSONL files (or stdin), one row at a time.

CSV: a header row naming the columns; ``to`` is required, and ``body`` unless
a template builds it. ``campaign``, ``key`` and ``send_before`` are optional;
every other column goes into ``metadata`` (and into template fields). A UTF-8
BOM is ignored; header names are matched without case or surrounding space.

JSONL: one JSON object per line with the same keys; unknown keys go into
``metadata``.

The reader streams: a million-row file is never held in memory. A bad row
(bad encoding, wrong column count, a line over 1 MiB, bad JSON, a template
field with no column) is yielded as a Row with the reason and its line
number, and reading goes on. Only a file that cannot be read at all raises
FileError.
"""

from __future__ import annotations

import csv
import io
import json
import string
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from worker.errors import InvalidInput

DEFAULT_MAX_LINE_BYTES = 1024 * 1024
KNOWN_FIELDS = ("to", "body", "campaign", "key", "send_before")
REQUIRED_FIELDS = ("to", "body")
Format = Literal["csv", "jsonl"]


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    fields: dict[str, Any] | None
    error: str | None


class FileError(InvalidInput):
    """The whole file is unusable: names the file and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(source, reason)


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
    handle = _open(source, stdin)
    first = _peek(handle)
    if not first.strip():
        raise FileError(name, "is empty")
    fmt = fmt or _format_of(name, first)
    lines = _lines(handle)
    if fmt == "csv":
        return _csv_rows(name, lines, tmpl)
    return _jsonl_rows(lines, tmpl)


def _open(source: str | Path, stdin: BinaryIO | None) -> io.BufferedReader:
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


def _peek(handle: io.BufferedReader) -> bytes:
    return handle.peek(4096)[:4096]


def _format_of(name: str, first: bytes) -> Format:
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "jsonl" if first.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def _lines(handle: io.BufferedReader) -> Iterator[tuple[int, bytes | None]]:
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
    header = _csv_header(name, lines, tmpl)
    return _csv_body(header, lines, tmpl)


def _csv_header(
    name: str, lines: Iterator[tuple[int, bytes | None]], tmpl: Template | None
) -> list[str]:
    for line_no, raw in lines:
        if raw is None:
            raise FileError(name, f"line {line_no} (the header) is longer than 1 MiB")
        text = _decode(raw, line_no)
        if isinstance(text, Row):
            raise FileError(name, f"the header is {text.error}")
        if not text.strip():
            continue
        try:
            header = [h.strip() for h in next(csv.reader([text]))]
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


def _csv_body(
    header: list[str], lines: Iterator[tuple[int, bytes | None]], tmpl: Template | None
) -> Iterator[Row]:
    pending: list[str] = []
    start = 0
    for line_no, raw in lines:
        if raw is None:
            yield Row(line_no, None, "line is longer than 1 MiB")
            pending = []
            continue
        text = _decode(raw, line_no)
        if isinstance(text, Row):
            if pending:
                # The open quoted field cannot go on through an unreadable line:
                # its row ends here, reported before this line, in order.
                yield Row(start, None, f"a quoted field runs into line {line_no}, not UTF-8")
                pending = []
            yield text
            continue
        if not pending:
            if not text.strip():
                continue
            start = line_no
        pending.append(text)
        joined = "".join(pending)
        if joined.count('"') % 2:  # a quoted field goes on to the next line
            continue
        pending = []
        yield _csv_row(header, joined, start, tmpl)
    if pending:
        yield Row(start, None, "a quoted field is never closed")


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
            yield Row(line_no, None, "line is longer than 1 MiB")
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
    metadata: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
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
            metadata = {**metadata, name: value}
    if "metadata" in values and not isinstance(values["metadata"], dict):
        return Row(line_no, None, "metadata: must be an object")
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
