"""Reading files of texts: every bad row named with its line, the good rows still read."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.ingest import DEFAULT_MAX_LINE_BYTES, FileError, Row, read_rows, write_rejects


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def rows(path: Path | str, **kw: object) -> list[Row]:
    return list(read_rows(path, **kw))  # type: ignore[arg-type]


def test_a_good_csv_reads_every_row_with_metadata(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.csv",
        "to,body,campaign,first_name\n+12015550123,hi,gotv,Ana\n2015550124,yo,,Ben\n",
    )
    got = rows(path)
    assert [r.line for r in got] == [2, 3]
    assert got[0].fields == {
        "to": "+12015550123",
        "body": "hi",
        "campaign": "gotv",
        "metadata": {"first_name": "Ana"},
    }
    assert "campaign" not in got[1].fields  # an empty cell leaves the default  # type: ignore[operator]


def test_a_bom_and_header_case_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", b"\xef\xbb\xbf TO ,Body\n+12015550123,hi\n")
    assert rows(path)[0].fields == {"to": "+12015550123", "body": "hi"}


def test_a_ragged_row_is_rejected_with_its_line_and_the_rest_still_load(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "to,body\n+12015550123,hi,extra\n+12015550124,ok\n")
    got = rows(path)
    assert (got[0].line, got[0].error) == (2, "row has 3 columns; the header has 2")
    assert got[1].fields == {"to": "+12015550124", "body": "ok"}


def test_bad_utf8_rejects_only_its_row(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", b"to,body\n+12015550123,caf\xe9\n+12015550124,ok\n")
    got = rows(path)
    assert got[0].line == 2 and "not valid UTF-8" in (got[0].error or "")
    assert got[1].fields is not None


def test_blank_lines_are_skipped_and_line_numbers_stay_physical(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", 'to,body\n\n+12015550123,"two\nlines"\n+12015550124,after\n')
    got = rows(path)
    assert [(r.line, r.fields["body"]) for r in got] == [(3, "two\nlines"), (5, "after")]  # type: ignore[index]


def test_a_huge_line_is_rejected_without_reading_it_whole(tmp_path: Path) -> None:
    huge = b"+12015550123," + b"x" * (DEFAULT_MAX_LINE_BYTES + 10) + b"\n"
    path = write(tmp_path, "t.csv", b"to,body\n" + huge + b"+12015550124,ok\n")
    got = rows(path)
    assert (got[0].line, got[0].error) == (2, "line is longer than 1 MiB")
    assert got[1].line == 3 and got[1].fields is not None


def test_an_unclosed_quote_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", 'to,body\n+12015550123,"never closed\n')
    assert rows(path)[-1].error == "a quoted field is never closed"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("", "is empty"),
        ("  \n\n", "is empty"),
        ("body\nhi\n", "no 'to' column"),
        ("to\n+12015550123\n", "no 'body' column"),
        ("to,body,to\n", "names 'to' twice"),
    ],
)
def test_an_unusable_csv_is_refused_with_the_reason(tmp_path: Path, content: str, why: str) -> None:
    path = write(tmp_path, "t.csv", content)
    with pytest.raises(FileError, match=why) as info:
        rows(path)
    assert str(path) in str(info.value)


def test_a_missing_file_or_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="does not exist"):
        rows(tmp_path / "nope.csv")
    with pytest.raises(FileError, match="is a directory"):
        rows(tmp_path)


def test_a_template_builds_the_body_from_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "to,first_name\n+12015550123,Ana\n")
    got = rows(path, template="Hi {first_name}, polls close at 8pm {{sic}}")
    assert got[0].fields["body"] == "Hi Ana, polls close at 8pm {sic}"  # type: ignore[index]


def test_a_template_field_with_no_column_rejects_the_row(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "to,first_name\n+12015550123,Ana\n")
    assert (
        rows(path, template="Hi {nickname}")[0].error == "template field {nickname} has no column"
    )


@pytest.mark.parametrize("template", ["Hi {first_name", "Hi {0}", "Hi {a.b}", "Hi {a[0]}"])
def test_a_malformed_template_is_refused_up_front(tmp_path: Path, template: str) -> None:
    path = write(tmp_path, "t.csv", "to,a\n+12015550123,x\n")
    with pytest.raises(FileError, match="--template"):
        rows(path, template=template)


def test_jsonl_reads_objects_and_puts_unknown_keys_in_metadata(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.jsonl",
        '{"to": "+12015550123", "body": "hi", "ward": 7, "metadata": {"a": 1}}\n\n',
    )
    assert rows(path)[0].fields == {
        "to": "+12015550123",
        "body": "hi",
        "metadata": {"a": 1, "ward": 7},
    }


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("[1, 2]", "not a JSON object (a list)"),
        ("{bad json", "invalid JSON"),
        ('{"metadata": 3}', "metadata: must be an object"),
    ],
)
def test_a_bad_jsonl_line_is_rejected_with_the_reason(tmp_path: Path, line: str, why: str) -> None:
    path = write(tmp_path, "t.jsonl", line + '\n{"to": "+12015550123", "body": "ok"}\n')
    got = rows(path)
    assert got[0].line == 1 and why in (got[0].error or "")
    assert got[1].fields is not None


def test_stdin_is_read_and_its_format_sniffed() -> None:
    data = io.BytesIO(b'{"to": "+12015550123", "body": "hi"}\n')
    assert rows("-", stdin=data)[0].fields == {"to": "+12015550123", "body": "hi"}


def test_send_before_passes_through_as_given(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "to,body,send_before\n+12015550123,hi,2030-01-01T00:00:00Z\n")
    assert rows(path)[0].fields["send_before"] == "2030-01-01T00:00:00Z"  # type: ignore[index]


def test_rejects_are_written_as_csv(tmp_path: Path) -> None:
    out = tmp_path / "rejects.csv"
    write_rejects(out, [(2, "to: bad"), (5, 'body: "quoted", reason')])
    assert out.read_text().splitlines() == [
        "line,reason",
        "2,to: bad",
        '5,"body: ""quoted"", reason"',
    ]


@settings(
    max_examples=int(os.environ.get("SENDQ_FUZZ_EXAMPLES", "10000")),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(data=st.binary(max_size=400), name=st.sampled_from(["f.csv", "f.jsonl"]))
def test_arbitrary_bytes_never_crash_the_reader(tmp_path: Path, data: bytes, name: str) -> None:
    path = write(tmp_path, name, data)
    try:
        got = rows(path)
    except FileError:
        return
    for row in got:
        assert (row.fields is None) != (row.error is None)


def test_a_header_csv_cannot_parse_is_a_file_error(tmp_path: Path) -> None:
    # Found by the fuzzer: a bare carriage return inside the header line.
    with pytest.raises(FileError, match="the header is not valid CSV"):
        rows(write(tmp_path, "t.csv", b"to,\rbody\x00\n"))
