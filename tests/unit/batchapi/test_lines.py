"""`batchapi.lines.read_lines`: a file's lines whatever their lengths, holding at most the cap
and a chunk — shown by construction (every read and every line's bytes measured), not by a clock."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchrun.batchapi.lines import HEAD, Line, read_lines


class Counted(io.BytesIO):
    """A file that records the largest read asked of it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest = 0

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and size > 0, "never the whole file at once"
        self.largest = max(self.largest, size)
        return super().read(size)


def lines_of(data: bytes, cap: int, chunk: int) -> list[Line]:
    f = Counted(data)
    found = list(read_lines(f, cap, chunk))
    assert f.largest <= chunk
    return found


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12), st.booleans(),
       st.integers(1, 30), st.integers(1, 17))
def test_every_line_comes_once_in_place_whole_up_to_the_cap_else_its_head(
        parts: list[bytes], last_newline: bool, cap: int, chunk: int) -> None:
    data = b"\n".join(parts) + (b"\n" if last_newline and parts else b"")
    found = lines_of(data, cap, chunk)
    *ended, last = data.split(b"\n")
    expected = [raw + b"\n" for raw in ended] + ([last] if last else [])
    assert [data[line.offset : line.offset + line.length] for line in found] == expected
    for line, raw in zip(found, expected, strict=True):
        body = raw.removesuffix(b"\n")
        assert line.whole == (len(body) <= cap)
        assert line.data == (raw if line.whole else raw[:HEAD])
        assert len(line.data) <= max(cap + 1, HEAD)


def test_a_line_past_the_cap_is_never_held_whole() -> None:
    cap, chunk = 1000, 64
    data = b'{"custom_id": "7", "response": {"status_code": 200, "body": "' + b"x" * 200_000 + b'"}}\n{"custom_id": "8"}\n'
    first, second = lines_of(data, cap, chunk)
    assert not first.whole and len(first.data) == HEAD and first.length == len(data) - 19
    assert (first.head_index(), first.head_status()) == (7, 200)
    assert second.whole and second.data == b'{"custom_id": "8"}\n' and second.offset == first.length


@pytest.mark.parametrize(("size", "whole"), [(10, True), (11, False)])
def test_the_cap_counts_the_line_without_its_newline(size: int, whole: bool) -> None:
    (line,) = lines_of(b"a" * size + b"\n", 10, 3)
    assert line.whole is whole


def test_a_head_without_a_custom_id_or_status_gives_none() -> None:
    (line,) = lines_of(b'{"custom_id": 7, "response": null}' + b" " * 50, 10, 8)
    assert (line.head_index(), line.head_status()) == (None, None)
