"""`batchrun.label.rows`: data files in and out, value for value (the whole pipeline's round
trips are in test_job.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest

from batchrun import reader as reader_module
from batchrun.errors import ConfigError, InputFileError
from batchrun.label.rows import Row, RowReader, RowWriter, cell, data_format, format_of

TRICKY_CSV = (
    '\ufeffid,text,note\r\n'
    '1,"comma, and ""quotes""",x\r\n'
    '2,"line one\nline two",\r\n'
    '\r\n'
    '3,"crlf\r\ninside",日本語 ☕\r\n'
    '4,short\r\n'
)


def test_csv_rows_keep_quoting_unicode_newlines_and_start_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(TRICKY_CSV.encode())
    with RowReader(path) as reader:
        assert reader.columns == ["id", "text", "note"]  # the BOM is not part of the first name
        rows = list(reader)
    assert [(r.number, r.line) for r in rows] == [(1, 2), (2, 3), (3, 6), (4, 8)]
    assert rows[0].values == {"id": "1", "text": 'comma, and "quotes"', "note": "x"}
    assert rows[1].values["text"] == "line one\nline two" and rows[1].values["note"] == ""
    assert rows[2].values == {"id": "3", "text": "crlf\r\ninside", "note": "日本語 ☕"}
    assert rows[3].values == {"id": "4", "text": "short"}  # a short row: the missing field is absent


def test_csv_rows_with_lone_cr_line_ends_are_numbered_by_them(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b'id,text\r1,"two\rlines"\r\r2,\xe2\x98\x95\r3,\xff\r')
    with pytest.raises(InputFileError, match=r"d.csv:6: not UTF-8"), RowReader(path) as reader:
        rows = []
        for row in reader:
            rows.append(row)
    assert [(r.number, r.line, r.values["text"]) for r in rows] == [(1, 2, "two\rlines"), (2, 5, "\u2615")]


def test_a_bom_is_told_and_written_back_in_csv_only(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbfa\n1\n")
    with RowReader(path) as reader:
        assert reader.bom and reader.columns == ["a"]
    for fmt, start in (("csv", b"\xef\xbb\xbfa,label\n"), ("jsonl", b'{"a":"1"')):
        writer = RowWriter(tmp_path / f"out.{fmt}", fmt, ["a"], ["label"], bom=True)  # type: ignore[arg-type]
        writer.write(Row(1, 2, {"a": "1"}), {"label": "x"})
        writer.commit()
        assert (tmp_path / f"out.{fmt}").read_bytes().startswith(start)


def test_csv_written_back_reads_the_same(tmp_path: Path) -> None:
    source = tmp_path / "d.csv"
    source.write_bytes((TRICKY_CSV + '5,"a lone\rCR",\r\n').encode())
    out = tmp_path / "out.csv"
    with RowReader(source) as reader:
        writer = RowWriter(out, "csv", reader.columns or [], ["label", "_error"])
        for row in reader:
            writer.write(row, {"label": f"L{row.number}", "_error": None})
        writer.commit()
    with out.open(newline="", encoding="utf-8") as f:
        back = list(csv.reader(f))
    assert back == [
        ["id", "text", "note", "label", "_error"],
        ["1", 'comma, and "quotes"', "x", "L1", ""],
        ["2", "line one\nline two", "", "L2", ""],
        ["3", "crlf\r\ninside", "日本語 ☕", "L3", ""],
        ["4", "short", "", "L4", ""],
        ["5", "a lone\rCR", "", "L5", ""],  # quoted: a bare CR would end the row
    ]
    assert out.read_bytes().count(b"\r\n") == 1  # rows end in \n; the one CRLF is row 3's text
    assert not list(tmp_path.glob(".*.tmp"))


def test_jsonl_objects_are_written_back_byte_for_byte(tmp_path: Path) -> None:
    lines = [b'{"id": 1, "text": "caf\\u00e9", "n": 1.0, "big": 1e2}', b'{}', b'  {"nested": {"a": [1, 2]}}  ']
    source = tmp_path / "d.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + b"\n\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    with RowReader(source) as reader:
        assert reader.columns is None
        writer = RowWriter(out, "jsonl", [], ["answer"])
        rows = list(reader)
        for row in rows:
            writer.write(row, {"answer": "é"})
        writer.commit()
    assert [r.line for r in rows] == [1, 3, 5]
    written = out.read_bytes().splitlines()
    assert written[0] == b'{"id": 1, "text": "caf\\u00e9", "n": 1.0, "big": 1e2,"answer":"\xc3\xa9"}'
    assert written[1] == b'{"answer":"\xc3\xa9"}'
    assert orjson.loads(written[2]) == {"nested": {"a": [1, 2]}, "answer": "é"}


def test_jsonl_written_as_csv_and_csv_as_jsonl(tmp_path: Path) -> None:
    row = Row(1, 1, {"text": "a", "n": 2, "flag": True, "none": None, "list": [1, "x"]}, b"{}")
    out = tmp_path / "out.csv"
    writer = RowWriter(out, "csv", ["text", "n", "flag", "none", "list", "absent"], ["label"])
    writer.write(row, {"label": "ok"})
    writer.commit()
    assert out.read_text().splitlines()[1] == 'a,2,true,,"[1,""x""]",,ok'

    out = tmp_path / "out.jsonl"
    writer = RowWriter(out, "jsonl", ["id", "text", "note"], ["label"])
    writer.write(Row(1, 2, {"id": "1", "text": "x"}), {"label": None})
    writer.commit()
    assert orjson.loads(out.read_bytes()) == {"id": "1", "text": "x", "note": "", "label": None}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no header row"),
        (b"a,a\n1,2\n", "names column 'a' twice"),
        (b"a,b\n1,2,3\n", "d.csv:2: row 1 has 3 fields, the header 2"),
        (b'a,b\n1,"open\n2,3\n', "not valid CSV: unexpected end of data"),
        (b"a,b\n1,\xff\n", "d.csv:2: not UTF-8"),
    ],
)
def test_bad_csv_is_an_input_error_with_its_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=message), RowReader(path) as reader:
        list(reader)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b'{"a": 1}\n{"a": \n', "d.jsonl:2: row 2 is not valid JSON"), (b'\n[1, 2]\n', "d.jsonl:2: row 1 is a JSON list")],
)
def test_bad_jsonl_is_an_input_error_with_its_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=message), RowReader(path) as reader:
        list(reader)


def test_a_jsonl_row_over_the_line_limit_is_an_input_error_with_its_line(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader_module, "MAX_LINE_BYTES", 64)
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n{"a": "' + b"x" * 100 + b'"}\r\n{"a": 3}\n')
    with pytest.raises(InputFileError, match=r"d.jsonl:3: row 2: the line is .* a row may have"), \
            RowReader(path) as reader:
        list(reader)


def test_formats_by_extension(tmp_path: Path) -> None:
    assert [format_of(Path(n)) for n in ("a.CSV", "a.tsv", "a.jsonl", "a.ndjson", "a.txt")] == [
        "csv", "tsv", "jsonl", "jsonl", None]
    with pytest.raises(ConfigError, match="cannot tell the data format"):
        data_format(Path("data.json"))
    with pytest.raises(InputFileError, match="no such file"):
        RowReader(tmp_path / "missing.csv")
    tsv = tmp_path / "d.tsv"
    tsv.write_text("a\tb\n1\tx, y\n")
    with RowReader(tsv) as reader:
        assert [r.values for r in reader] == [{"a": "1", "b": "x, y"}]


def test_cell() -> None:
    assert [cell(v) for v in ("x", None, 1, 1.5, False, {"a": "é"})] == ["x", "", "1", "1.5", "false", '{"a":"é"}']
