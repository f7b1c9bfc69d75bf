"""The journal's records: what `scan` reads back is exactly what was appended, up to the first
record a crash or a power loss left torn."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import pytest

from batchrun.disk import journal

LINES = [b'{"custom_id": "a", "response": {"body": "x y z"}}\n', b'{"custom_id": "b"}\n', b"{}\n"]


def records() -> bytes:
    return b"".join(journal.encode(index, index % 2 == 0, line) for index, line in zip((7, 2, 40), LINES, strict=True))


def test_what_is_appended_is_read_back_in_order() -> None:
    entries = list(journal.scan(io.BytesIO(records())))
    assert entries == [journal.Entry(7, False, LINES[0]), journal.Entry(2, True, LINES[1]),
                       journal.Entry(40, True, LINES[2])]


def test_a_record_is_its_index_its_ok_flag_its_crc_and_the_line_as_written() -> None:
    line = b'{"custom_id": "a b c"}\n'  # spaces in the line do not split it
    assert journal.encode(12, False, line) == b"12 0 %08x " % zlib.crc32(line) + line
    assert list(journal.scan(io.BytesIO(journal.encode(12, False, line)))) == [journal.Entry(12, False, line)]


def test_an_empty_journal_has_no_records() -> None:
    assert list(journal.scan(io.BytesIO(b""))) == []


@pytest.mark.parametrize("tear", [
    pytest.param(lambda last: last[:-1], id="no newline: cut short"),
    pytest.param(lambda last: last[: len(last) // 2], id="half a record"),
    pytest.param(lambda last: b"\0" * len(last), id="zeros the filesystem allocated"),
    pytest.param(lambda last: last.replace(b"custom_id", b"custom_ID"), id="the line changed: its crc"),
    pytest.param(lambda last: b"x" + last, id="an index that is no number"),
    pytest.param(lambda last: b"-" + last, id="a negative index"),
    pytest.param(lambda last: last.replace(b" 1 ", b" 2 ", 1), id="an ok flag that is neither 0 nor 1"),
    pytest.param(lambda last: last.replace(b" ", b"", 2), id="fields missing"),
])
def test_a_torn_tail_is_not_read(tear: Callable[[bytes], bytes]) -> None:
    good = journal.encode(0, True, LINES[0])
    torn = tear(journal.encode(1, True, LINES[1]))
    assert list(journal.scan(io.BytesIO(good + torn))) == [journal.Entry(0, True, LINES[0])]


def test_scanning_stops_at_the_first_torn_record_whatever_follows() -> None:
    good, torn, after = (journal.encode(i, True, line) for i, line in enumerate(LINES))
    torn = torn.replace(b"custom_id", b"custom_ID")
    assert list(journal.scan(io.BytesIO(good + torn + after))) == [journal.Entry(0, True, LINES[0])]
