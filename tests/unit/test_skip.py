"""Reading past the lines an earlier start finished (`skip.py`): what is kept of them, and where
the reading goes on, are what reading every line from the start gives."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun import reader, skip
from batchrun.reader import Position, read_jobs
from batchrun.records import LineError
from batchrun.skip import skip_in_steps

from .test_idscan import PARSED, READ_OFF

# Valid request lines that start as most files write them, and some that only look like they do
# (`test_idscan.py` says which): what each one's id is, parsed, is what a resume must keep of it.
_LOOKALIKES = READ_OFF + PARSED


def _plain(i: int) -> bytes:
    return orjson.dumps({"custom_id": f"id-{i % 7}", "body": {"model": "m", "messages": []}})


def _taking_a_line_number(n: int) -> bytes:
    """A line whose id is the one a line without one gets at line ``n``."""
    return orjson.dumps({"custom_id": f"line-{n}", "body": {"model": "m"}})


def _kept(path: Path, position: Position) -> tuple[int, int, int, int, list[bool]]:
    """Where a skip stopped, and which ids it kept of any a line of ``path`` can have."""
    candidates = {item.custom_id for item in read_jobs(path)} | {f"line-{n}" for n in range(1, 80)}
    candidates |= {"a", "ab", "d", "h", "k"}
    return (position.offset, position.line_no, position.index, len(position.seen),
            [c in position.seen for c in sorted(candidates)])


def _file(path: Path, lines: list[bytes], ending: bytes = b"\n", last: bool = True) -> Path:
    path.write_bytes(b"".join(line + ending for line in lines)[: None if last or not lines else -len(ending)])
    return path


@pytest.mark.parametrize("lookalike", _LOOKALIKES)
def test_a_line_read_off_or_parsed_keeps_the_id_parsing_gives(tmp_path: Path, lookalike: bytes) -> None:
    path = _file(tmp_path / "in.jsonl", [_plain(1), lookalike, _plain(2)])
    count = 3 - (not lookalike.strip())
    parsed, read_off = (list(skip_in_steps(path, count, valid=valid))[-1] for valid in (False, True))
    assert _kept(path, read_off) == _kept(path, parsed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.one_of(st.integers(0, 20).map(_plain), st.sampled_from(_LOOKALIKES)), max_size=30),
       block=st.sampled_from([16, 60, 200, 1 << 17]), ending=st.sampled_from([b"\n", b"\r\n"]), last=st.booleans(),
       data=st.data())
def test_reading_ids_off_valid_lines_keeps_what_parsing_them_keeps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, picks: list[bytes], block: int, ending: bytes, last: bool,
        data: st.DataObject) -> None:
    """A resume whose skipped lines are known valid reads most ids off the lines' starts, blocks
    at a time: where it stops, and every id it keeps, are those of parsing each line, from the
    start of the file or of a shard's lines, whatever the blocks cut, with CRLF line ends or
    without a newline after the last line."""
    path = _file(tmp_path / "in.jsonl", picks, ending, last)
    monkeypatch.setattr(skip, "_SKIP_BLOCK", block)
    first = data.draw(st.integers(0, len(picks)))
    count = data.draw(st.integers(0, len(picks) - first))
    start = sum(len(line) + len(ending) for line in picks[:first])
    parsed, read_off = (list(skip_in_steps(path, count, origin=Position(start, first, first), valid=valid))[-1]
                        for valid in (False, True))
    assert _kept(path, read_off) == _kept(path, parsed)


def test_lines_across_the_end_of_a_block_are_read_whole(tmp_path: Path) -> None:
    """Blocks of `skip._SKIP_BLOCK` bytes end inside a line: the ids read are the lines', and so
    are those of the last line, which has no newline after it, and of the line the count ends at."""
    lines = [orjson.dumps({"custom_id": f"{i}-" + "x" * (i % 97), "body": {"model": "m"}}) for i in range(3000)]
    path = _file(tmp_path / "in.jsonl", lines, last=False)
    assert path.stat().st_size > 2 * skip._SKIP_BLOCK
    for count in (3000, 2999, 1234):
        parsed, read_off = (list(skip_in_steps(path, count, valid=valid))[-1] for valid in (False, True))
        assert _kept(path, read_off) == _kept(path, parsed)
        assert all(f"{i}-" + "x" * (i % 97) in read_off.seen for i in range(count))


def test_valid_lines_written_as_most_files_write_them_are_not_parsed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes a resume fast: their ids are read off their starts, blocks at a time."""
    def unparsed(line: bytes) -> object:
        raise AssertionError(f"parsed {line!r}")

    path = _file(tmp_path / "in.jsonl", [line for _ in range(300) for line in READ_OFF] + [_plain(0)])
    monkeypatch.setattr(reader, "orjson", SimpleNamespace(loads=unparsed, JSONDecodeError=orjson.JSONDecodeError))
    *_, position = skip_in_steps(path, 300 * len(READ_OFF), valid=True)
    assert position.index == 300 * len(READ_OFF) and position.offset == path.stat().st_size - len(_plain(0)) - 1


def test_without_valid_lines_a_line_that_looks_read_off_is_parsed(tmp_path: Path) -> None:
    """A line that is not JSON may start like a request: its id is its line number's, and only a
    skip told the lines are valid reads them off."""
    path = _file(tmp_path / "in.jsonl", [_plain(1), b'{"custom_id":"a","body":{', _plain(2)])
    *_, position = skip_in_steps(path, 3)
    assert "line-2" in position.seen and "a" not in position.seen


def test_a_line_that_is_not_utf8_is_parsed_even_among_lines_said_valid(tmp_path: Path) -> None:
    path = _file(tmp_path / "in.jsonl", [_plain(1), b'{"custom_id":"\xff","body":{}}', _plain(2)])
    *_, position = skip_in_steps(path, 3, valid=True)
    assert position.index == 3 and "line-2" in position.seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.one_of(st.integers(0, 20).map(_plain), st.sampled_from(_LOOKALIKES),
                                st.integers(1, 12).map(_taking_a_line_number)), max_size=30),
       extra=st.lists(st.sampled_from([b"not json", b'{"model":"m"}', b"   "]), max_size=2),
       window=st.sampled_from([8, 100, 1 << 16]), data=st.data())
def test_reading_on_from_a_skip_is_reading_from_the_start_whatever_ids_it_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, picks: list[bytes], extra: list[bytes], window: int,
        data: st.DataObject) -> None:
    """A skip told how many lines follow it reads them first and keeps only the skipped ids they
    repeat: reading on from it gives every later line as a read from the start (of the file or of
    a shard's lines) does, duplicates included — also when more or fewer lines follow than it was
    told, or one of them has no id of its own."""
    lines = data.draw(st.permutations(picks + extra))
    path, size = _file(tmp_path / "in.jsonl", lines), sum(len(line) + 1 for line in lines)
    monkeypatch.setattr(skip, "_AFTER_WINDOW", window)
    monkeypatch.setattr(skip, "_AFTER_BYTES", data.draw(st.sampled_from([window, 1 << 20])))
    first = data.draw(st.integers(0, len(lines)))
    origin = sum(len(line) + 1 for line in lines[:first])
    everything = list(read_jobs(path, size, start=Position(origin, first, first)))
    count = data.draw(st.integers(0, len(everything)))
    after = max(0, len(everything) - count + data.draw(st.sampled_from([0, -2, 2])))
    valid = not any(isinstance(item, LineError) and item.code == "invalid_request_line" for item in everything[:count])
    *_, position = skip_in_steps(path, count, size, Position(origin, first, first), valid=valid, after=after)
    assert position.index == first + count
    assert list(read_jobs(path, size, start=position)) == everything[count:]


@pytest.mark.parametrize("window", [1 << 16, 60])
def test_a_skip_keeps_only_the_ids_the_lines_after_it_repeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             window: int) -> None:
    """No table of every finished line's id to fill, with blank lines before the later ones, and
    a window that starts inside a line; the later line that repeats one is still refused as a
    duplicate."""
    monkeypatch.setattr(skip, "_AFTER_WINDOW", window)
    skipped = [orjson.dumps({"custom_id": f"done-{i}", "body": {"model": "m"}}) for i in range(500)]
    later = [orjson.dumps({"custom_id": "new", "body": {"model": "m"}}), skipped[7]]
    path = _file(tmp_path / "in.jsonl", [*skipped, b"", b"  ", *later])
    *_, position = skip_in_steps(path, 500, path.stat().st_size, valid=True, after=2)
    assert len(position.seen) == 1 and "done-7" in position.seen
    rest = list(read_jobs(path, path.stat().st_size, start=position))
    assert rest == list(read_jobs(path))[500:] and isinstance(rest[1], LineError)
    assert rest[1].code == "duplicate_custom_id"


def test_a_later_line_without_an_id_of_its_own_is_checked_against_every_skipped_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The id a line without one gets is its line number's, which reading lines back from the end
    does not know: then every skipped id is kept, and a skipped line that took the number's id
    makes the later line a duplicate."""
    path = _file(tmp_path / "in.jsonl", [_taking_a_line_number(3), _plain(1), b'{"model":"m"}'])
    everything = list(read_jobs(path))
    assert isinstance(everything[2], LineError) and everything[2].code == "duplicate_custom_id"
    *_, position = skip_in_steps(path, 2, path.stat().st_size, valid=True, after=1)
    assert list(read_jobs(path, path.stat().st_size, start=position)) == everything[2:]


@pytest.mark.parametrize("told", [1, 6])
def test_lines_after_a_skip_are_checked_whatever_it_was_told_of_them(tmp_path: Path, told: int) -> None:
    """Told one line follows where three do, a skip reads back two: the third from the end, which
    repeats a skipped id, is not among them, so every skipped id is kept after all. Told six,
    more than there are, it reads back every line there is."""
    path = _file(tmp_path / "in.jsonl", [_plain(1), _plain(2), _plain(1), _plain(3), _plain(4)])
    everything = list(read_jobs(path))
    assert isinstance(everything[2], LineError) and everything[2].code == "duplicate_custom_id"
    *_, position = skip_in_steps(path, 2, path.stat().st_size, valid=True, after=told)
    assert list(read_jobs(path, path.stat().st_size, start=position)) == everything[2:]


@pytest.mark.parametrize(("few", "kept"), [(2, 0), (1, 5)])
def test_with_more_lines_left_than_few_every_skipped_id_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                few: int, kept: int) -> None:
    """Reading the lines left first is bounded work: past `skip.FEW_AFTER` of them, it is not done."""
    monkeypatch.setattr(skip, "FEW_AFTER", few)
    path = _file(tmp_path / "in.jsonl", [orjson.dumps({"custom_id": f"id-{i}", "body": {}}) for i in range(7)])
    *_, position = skip_in_steps(path, 5, path.stat().st_size, valid=True, after=2)
    assert len(position.seen) == kept
