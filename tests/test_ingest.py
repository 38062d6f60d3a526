"""Reading files of texts: every bad row named with its line, the good rows still read."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
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
    assert rows(path)[-1].error == (
        "a quoted field is never closed (it runs from line 2 to the end, line 2)"
    )


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


EXAMPLES = int(os.environ.get("SENDQ_FUZZ_EXAMPLES", "10000"))
# Cells from a fixed alphabet (cheap to generate): CSV's specials, a BOM, a NUL, a
# surrogate-free astral emoji, and text in three scripts; raw bytes cover the rest.
cell_text = st.text(
    alphabet=st.sampled_from(list(',"\r\n\t {}:\\+1é€\ufeff\x00😀ж文')), max_size=10
)
header_names = st.sampled_from(["to", "body", " TO ", "Body", "campaign", "key", "ward", "to"])
encodings = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "utf-16-le", "cp1252"])


def _encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


csv_docs = st.builds(
    lambda header, rows, newline, encoding: _encode(
        newline.join([",".join(header), *(",".join(row) for row in rows)]) + newline, encoding
    ),
    st.one_of(
        st.lists(header_names, min_size=1, max_size=4),
        st.lists(header_names, max_size=2).map(lambda extra: ["to", "body", *extra]),
    ),
    st.lists(st.lists(cell_text, max_size=4), max_size=3),  # ragged: any number of cells
    st.sampled_from(["\n", "\r\n", "\r"]),
    encodings,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | cell_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(cell_text, inner, max_size=3),
    max_leaves=4,
)
jsonl_lines = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"to": json_values, "body": json_values, "metadata": json_values}
    ).map(json.dumps),
    json_values.map(json.dumps),
    cell_text,
)
jsonl_docs = st.builds(
    lambda lines, encoding: _encode("\n".join(lines) + "\n", encoding),
    st.lists(jsonl_lines, max_size=3),
    encodings,
)


@settings(
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)
@given(
    data=st.one_of(st.binary(max_size=400), csv_docs, jsonl_docs),
    name=st.sampled_from(["f.csv", "f.jsonl", "f.txt"]),
)
def test_any_file_is_read_row_by_row_with_each_bad_row_named_by_its_line(
    tmp_path: Path, data: bytes, name: str
) -> None:
    path = write(tmp_path, name, data)
    try:
        got = rows(path)
    except FileError as exc:
        event("the file is refused")
        assert str(path) in str(exc)
        return
    good = sum(r.error is None for r in got)
    event("some rows read" if good else "every row rejected" if got else "no rows")
    lines = data.count(b"\n") + 1
    # Each line reported once, in order.
    assert [r.line for r in got] == sorted({r.line for r in got})
    for row in got:
        assert (row.fields is None) != (row.error is None)
        assert 1 <= row.line <= lines
        if row.fields is not None:
            assert isinstance(row.fields, dict)
        else:
            assert isinstance(row.error, str) and row.error


def test_a_bom_is_ignored_in_jsonl_too(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", b'\xef\xbb\xbf{"to": "+12015550123", "body": "hi"}\n')
    assert rows(path)[0].fields == {"to": "+12015550123", "body": "hi"}


def test_a_utf16_csv_is_refused_naming_the_file_and_the_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "to,body\n+12015550123,hi\n".encode("utf-16"))
    with pytest.raises(FileError, match="the header is not valid UTF-8") as info:
        rows(path)
    assert str(path) in str(info.value)


def test_a_utf16_jsonl_file_rejects_each_line_with_its_number(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", '{"to": "+12015550123", "body": "hi"}\n'.encode("utf-16"))
    got = rows(path)
    assert got and all(r.fields is None and r.error for r in got)
    assert got[0] == Row(1, None, "not valid UTF-8 at byte 1")


def test_a_latin1_header_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "to,body,café\n+12015550123,hi,x\n".encode("latin-1"))
    with pytest.raises(FileError, match="the header is not valid UTF-8 at byte 12") as info:
        rows(path)
    assert str(path) in str(info.value)


def test_latin1_rows_are_rejected_each_with_its_line(tmp_path: Path) -> None:
    data = "to,body\n+12015550123,olé\n+12015550124,ok\n+12015550125,señor\n"
    got = rows(write(tmp_path, "t.csv", data.encode("latin-1")))
    assert [(r.line, (r.error or "")[:17]) for r in got] == [
        (2, "not valid UTF-8 a"),
        (3, ""),
        (4, "not valid UTF-8 a"),
    ]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("to,body\n+12015550123\n", "row has 1 columns; the header has 2"),
        ("to,body\n+12015550123,a,b,c\n", "row has 4 columns; the header has 2"),
        ("to,body\n,\n", None),  # two empty cells: the row's fields are left out
    ],
)
def test_ragged_rows_name_their_column_count(tmp_path: Path, content: str, why: str) -> None:
    assert rows(write(tmp_path, "t.csv", content))[0].error == why


TWENTY_MB = 20 * 1024 * 1024


def _peak_while_reading(path: Path) -> tuple[list[Row] | FileError, int]:
    tracemalloc.start()
    try:
        got: list[Row] | FileError = rows(path)
    except FileError as exc:
        got = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return got, peak


@pytest.mark.parametrize("name", ["t.csv", "t.jsonl"])
def test_a_single_20_mb_line_without_a_newline_is_rejected_in_bounded_memory(
    tmp_path: Path, name: str
) -> None:
    head = b"to,body\n" if name.endswith(".csv") else b'{"to": "+12015550123", "body": "ok"}\n'
    path = tmp_path / name
    with path.open("wb") as out:
        out.write(head)
        for _ in range(20):
            out.write(b"x" * (1024 * 1024))
    got, peak = _peak_while_reading(path)
    assert isinstance(got, list)
    assert got[-1] == Row(2, None, "line is longer than 1 MiB")
    assert peak < 4 * DEFAULT_MAX_LINE_BYTES  # read a chunk at a time, never the 20 MB line


def test_a_20_mb_header_line_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"to," * (TWENTY_MB // 3))
    got, peak = _peak_while_reading(path)
    assert isinstance(got, FileError)
    assert str(got) == f"{path}: line 1 (the header) is longer than 1 MiB"
    assert peak < 4 * DEFAULT_MAX_LINE_BYTES


def test_rows_come_in_line_order_even_when_a_bad_line_interrupts_a_quoted_field(
    tmp_path: Path,
) -> None:
    # Found by the fuzzer: b'to,body\n"\n\x80'.
    got = rows(write(tmp_path, "t.csv", b'to,body\n"\n\x80'))
    assert [r.line for r in got] == [2, 3]


def test_a_jsonl_number_too_long_to_convert_rejects_only_its_line(tmp_path: Path) -> None:
    line = b'{"to": ' + b"1" * 5000 + b', "body": "x"}\n'
    got = rows(write(tmp_path, "t.jsonl", line + b'{"to": "+12015550123", "body": "ok"}\n'))
    assert got[0].line == 1 and got[0].error and got[1].fields is not None


def test_deeply_nested_jsonl_rejects_only_its_line(tmp_path: Path) -> None:
    line = b"[" * 100_000 + b"\n"
    got = rows(write(tmp_path, "t.jsonl", line + b'{"to": "+12015550123", "body": "ok"}\n'))
    assert got[0].line == 1 and got[0].error and got[1].fields is not None


def test_a_header_csv_cannot_parse_is_a_file_error(tmp_path: Path) -> None:
    # Found by the fuzzer: a bare carriage return inside the header line.
    with pytest.raises(FileError, match="the header is not valid CSV"):
        rows(write(tmp_path, "t.csv", b"to,\rbody\x00\n"))


def _reason(fields: dict[str, object] | None) -> str:
    from pydantic import ValidationError

    from worker.models import SendJob, describe_validation_error

    with pytest.raises(ValidationError) as info:
        SendJob.model_validate(fields)
    return describe_validation_error(info.value)


def test_an_empty_body_or_number_cell_is_rejected_as_empty_as_on_the_command_line(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "t.csv", "to,body\n+12015550123,\n,hi\n+12015550123,  \n")
    got = [_reason(r.fields) for r in rows(path)]
    # The same words `sendq enqueue --body ""` prints.
    assert got == ["body: is empty", "to: is empty", "body: is empty"]
    assert _reason({"to": "+12015550123", "body": ""}) == "body: is empty"


def test_a_null_body_in_jsonl_is_rejected_as_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", '{"to": "+12015550123", "body": null}\n')
    assert _reason(rows(path)[0].fields) == "body: is empty"
