"""CSV rows end where csv's excel dialect ends them, read in one pass over the file."""

from __future__ import annotations

import csv
import io
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker import ingest
from worker.ingest import DEFAULT_MAX_LINE_BYTES, Row, read_rows

EXAMPLES = int(os.environ.get("SENDQ_FUZZ_EXAMPLES", "10000"))
HEADER = ["to", "body", "c2", "c3"]


def write(tmp_path: Path, data: bytes | str) -> Path:
    path = tmp_path / "t.csv"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def good_rows(count: int, first: int = 0) -> str:
    return "".join(f"+1201555{(first + i) % 10_000:04d},hi {i}\n" for i in range(count))


def test_a_quote_inside_an_unquoted_field_is_a_character_and_every_later_row_reads(
    tmp_path: Path,
) -> None:
    data = 'to,body\n+12015550100,Our 5" sale\n' + good_rows(500)
    got = list(read_rows(write(tmp_path, data)))
    assert len(got) == 501 and all(r.error is None for r in got)
    assert got[0].fields == {"to": "+12015550100", "body": 'Our 5" sale'}
    assert [r.line for r in got] == list(range(2, 503))
    assert got == [Row(r.line, r.fields, None) for r in got]  # as csv.reader reads them


@pytest.mark.parametrize(
    ("line", "body"),
    [
        ('+12015550100,"say ""hi"""\n', 'say "hi"'),  # doubled quotes inside quotes
        ('+12015550100,"Our 5"" sale"\n', 'Our 5" sale'),
        ('+12015550100,"closed" then more\n', "closed then more"),  # non-strict, as csv
        ('+12015550100, "a space first"\n', ' "a space first"'),  # no skipinitialspace
        ('+12015550100,5"\n', '5"'),
    ],
)
def test_quotes_follow_the_excel_dialect(tmp_path: Path, line: str, body: str) -> None:
    got = list(read_rows(write(tmp_path, "to,body\n" + line + good_rows(2))))
    assert got[0].fields == {"to": "+12015550100", "body": body}
    assert [r.line for r in got] == [2, 3, 4] and all(r.error is None for r in got)


def test_an_unclosed_quote_names_the_lines_it_swallowed(tmp_path: Path) -> None:
    got = list(read_rows(write(tmp_path, 'to,body\n+12015550100,"Our 5 sale\n' + good_rows(3))))
    assert got == [
        Row(2, None, "a quoted field is never closed (it runs from line 2 to the end, line 5)")
    ]


def _work_while_reading(monkeypatch: pytest.MonkeyPatch, path: Path) -> int:
    """Characters the reader scans for quotes or copies into a record, in total."""
    work = 0
    scan = ingest._quote_open_after
    text = ingest._Open.text

    def counted_scan(line: str, quoted: bool) -> bool:
        nonlocal work
        work += len(line)
        return scan(line, quoted)

    def counted_text(self: Any) -> str:
        nonlocal work
        joined = text(self)
        work += len(joined)
        return joined

    monkeypatch.setattr(ingest, "_quote_open_after", counted_scan)
    monkeypatch.setattr(ingest._Open, "text", counted_text)
    for _ in read_rows(path):
        pass
    return work


@pytest.mark.parametrize("opener", ['+12015550100,Our 5" sale\n', '+12015550100,"Our 5 sale\n'])
def test_reading_is_linear_in_the_file_whatever_its_quotes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opener: str
) -> None:
    # The old reader joined the growing buffer again on every line after an open
    # quote: 20k lines cost 20k re-joins of up to the whole file (15 s).
    data = "to,body\n" + opener + good_rows(20_000)
    work = _work_while_reading(monkeypatch, write(tmp_path, data))
    assert work <= 2 * len(data)  # each character scanned once and copied at most once


def test_a_quote_left_open_for_the_rest_of_a_large_file_is_read_in_bounded_memory(
    tmp_path: Path,
) -> None:
    data = 'to,body\n+12015550100,"Our 5 sale\n' + good_rows(200_000)  # 4 MB inside one field
    path = write(tmp_path, data)
    tracemalloc.start()
    try:
        got = list(read_rows(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(r.line, (r.error or "")[:30]) for r in got] == [(2, "a quoted field is never closed")]
    assert peak < 3 * DEFAULT_MAX_LINE_BYTES


def test_a_row_over_1_mib_across_lines_is_rejected_and_the_next_row_still_reads(
    tmp_path: Path,
) -> None:
    long_field = ("x" * 1000 + "\n") * 1100  # 1.1 MB in one quoted field, 1,100 lines
    data = f'to,body\n+12015550100,"{long_field}"\n' + good_rows(1)
    got = list(read_rows(write(tmp_path, data)))
    assert got[0] == Row(2, None, "row is longer than 1 MiB (lines 2 to 1102)")
    assert got[1].line == 1103 and got[1].error is None


def test_an_unreadable_line_ends_an_open_quoted_field_and_reading_goes_on(tmp_path: Path) -> None:
    huge = b"y" * (DEFAULT_MAX_LINE_BYTES + 10) + b"\n"
    data = b'to,body\n+12015550100,"open\n' + huge + b"+12015550101,ok\n"
    got = list(read_rows(write(tmp_path, data)))
    assert got == [
        Row(2, None, "a quoted field runs into line 3, which is longer than 1 MiB"),
        Row(3, None, "line is longer than 1 MiB"),
        Row(4, {"to": "+12015550101", "body": "ok"}, None),
    ]


# Cells with every character that matters to the dialect. A newline outside quotes
# only starts another record, and a lone carriage return is left out (csv.reader
# ends a line at one; sendq's lines end at "\n"), so raw cells have neither. Quoted
# cells hold no space, so no line of spaces (which sendq skips) can come of them.
raw_cells = st.text(alphabet=st.sampled_from(list(',"x \u00e9\U0001f600')), max_size=6)
quoted_cells = st.text(alphabet=st.sampled_from(list(',"\nx\u00e9')), max_size=6).map(
    lambda c: '"' + c.replace('"', '""') + '"'
)
records = st.lists(st.lists(st.one_of(raw_cells, quoted_cells), max_size=5), max_size=6)


def _cells_of(row: Row) -> list[str]:
    assert row.fields is not None, row
    meta = row.fields.get("metadata", {})
    return [row.fields["to"], row.fields["body"], meta["c2"], meta["c3"]]


@settings(
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)
@given(body=records, newline=st.sampled_from(["\n", "\r\n"]))
def test_rows_are_the_records_csv_reader_reads(
    tmp_path: Path, body: list[list[str]], newline: str
) -> None:
    lines = [",".join(r) for r in body]
    lines = [line for line in lines if line.strip()]  # sendq skips blank lines; csv.reader not
    doc = newline.join([",".join(HEADER), *lines]) + newline
    # A newline in a quoted cell lands outside quotes when a raw cell's quote opened
    # a field before it: csv.reader reads the blank line that can make as [].
    expected = [r for r in csv.reader(io.StringIO(doc, newline="")) if r][1:]
    got = list(read_rows(write(tmp_path, doc)))
    if got and (got[-1].error or "").startswith("a quoted field is never closed"):
        expected, got = expected[:-1], got[:-1]  # csv.reader yields what it has; sendq refuses
    assert len(got) == len(expected)
    for row, cells_read in zip(got, expected, strict=True):
        if len(cells_read) == len(HEADER):
            assert _cells_of(row) == cells_read
        else:
            assert row.error == f"row has {len(cells_read)} columns; the header has {len(HEADER)}"
