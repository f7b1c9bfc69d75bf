"""What makes two starts the same run, alone: one pass over the input (size, digest, request
lines as the reader counts them), and the refusal of another run naming what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.disk.identity import InputScan, check_same_run, scan_input
from batchrun.errors import ConfigError, InputFileError

REQUEST = b'{"custom_id": "a", "body": {"model": "m"}}'


def scanned(tmp_path: Path, data: bytes, span: tuple[int, int] | None = None) -> InputScan:
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    return scan_input(path, span)


@pytest.mark.parametrize(("data", "lines"), [
    (REQUEST + b"\n", 1),
    (REQUEST, 1),  # no newline at the end
    (REQUEST + b"\n\n  \t\r\n" + REQUEST + b"\n\n", 2),  # blank lines are not requests
    (b"\xef\xbb\xbf" + REQUEST + b"\n" + REQUEST, 2),  # a BOM before the first
    (b"\xef\xbb\xbf  \n" + REQUEST, 1),  # a BOM is no ink: the line it starts is blank
    (b"  \n" + REQUEST + b"\n   ", 1),
])
def test_request_lines_are_counted_as_the_reader_counts_them(tmp_path: Path, data: bytes, lines: int) -> None:
    assert scanned(tmp_path, data).lines == lines
    assert scanned(tmp_path, data).size == len(data)


def test_a_line_longer_than_a_read_is_counted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("batchrun.disk.identity._CHUNK", 7)
    data = b"\n   \n" + REQUEST + b"\n" + b" " * 20 + b"\n" + REQUEST
    assert scanned(tmp_path, data).lines == 2


def test_the_digest_is_of_the_content_and_a_span_of_its_bytes_alone(tmp_path: Path) -> None:
    first = scanned(tmp_path, REQUEST + b"\n" + REQUEST + b"\n")
    other = scanned(tmp_path, REQUEST.replace(b'"a"', b'"b"') + b"\n" + REQUEST + b"\n")
    assert first.size == other.size and first.digest != other.digest
    half = len(REQUEST) + 1
    part = scanned(tmp_path, REQUEST + b"\n" + REQUEST + b"\n\n", (half, 2 * half))
    assert (part.size, part.lines) == (2 * half + 1, 1)  # the whole file's size, the span's lines
    assert part.digest == scanned(tmp_path, REQUEST + b"\n").digest


def test_an_input_without_a_request_is_refused_but_a_span_of_one_need_not_hold_one(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"in\.jsonl"):
        scanned(tmp_path, b"not json\n\n")
    assert scanned(tmp_path, b"not json\n" + REQUEST, (0, 9)).lines == 1


def same(size: int = 10, digest: str = "d", **options: object) -> dict[str, object]:
    return {"input": {"size": size, "digest": digest}, "options": {"model": None, **options}}


def test_the_same_run_passes() -> None:
    check_same_run(same(), same(), "out.jsonl", "run with --restart")


@pytest.mark.parametrize(("current", "message"), [
    (same(size=12), r"^out\.jsonl: the input file changed \(size 10 → 12 bytes\); restore the original input, or "
                    r"run with --restart$"),
    (same(digest="e"), r"^out\.jsonl: the input file's content changed \(same size\); restore it, or run with --restart$"),
    (same(model="gpt-4o"), r"^out\.jsonl: options changed \(model None → 'gpt-4o'\); use the original options, or "
                           r"run with --restart$"),
    (same(via="batch"), r"options changed \(via None → 'batch'\)"),  # an option on one side only
])
def test_another_run_is_refused_naming_what_changed(current: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_same_run(same(), current, "out.jsonl", "run with --restart")
    with pytest.raises(ConfigError):  # and the other way round
        check_same_run(current, same(), "out.jsonl", "run with --restart")
