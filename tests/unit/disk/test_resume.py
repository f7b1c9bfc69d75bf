"""What earlier starts finished, handed out line by line alone: from the journal or an earlier
output read in step, a failed line again with ``--retry-failed``, a mismatch refused."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from batchrun.disk.checkpoint import Recovered
from batchrun.disk.journal import Entry
from batchrun.disk.resume import Carryover
from batchrun.errors import ConfigError
from batchrun.records import Job, LineError, Result


def job(index: int, custom_id: str | None = None) -> Job:
    return Job(index, index + 1, custom_id or f"req-{index}", "/v1/chat/completions", b"{}", "m")


def line(index: int, *, ok: bool = True) -> bytes:
    if ok:
        return Result(index, f"req-{index}", 200, None, {"i": index}, None).encode("run")
    return Result(index, f"req-{index}", 400, None, {"error": {}}, {"code": "invalid_value", "message": "no"}).encode("run")


def lines(*encoded: bytes) -> Generator[bytes, None, None]:
    yield from encoded


def taken(carryover: Carryover, items: Iterator[Job | LineError]) -> list[object]:
    return [None if (result := carryover.take(item)) is None else (result.index, result.error is None) for item in items]


def test_journal_lines_are_handed_out_as_their_lines_come_and_the_rest_are_done_again() -> None:
    finished = {1: Entry(1, True, line(1)), 3: Entry(3, False, line(3, ok=False))}
    carryover = Carryover(Recovered(prefix=1, finished=finished), retry_failed=False)
    assert carryover.prefix == 1 and carryover.left == 2
    assert taken(carryover, iter([job(1), job(2), job(3)])) == [(1, True), None, (3, False)]
    assert carryover.left == 0


def test_with_retry_failed_a_failed_line_is_done_again_and_only_successes_are_left() -> None:
    finished = {0: Entry(0, False, line(0, ok=False)), 1: Entry(1, True, line(1))}
    carryover = Carryover(Recovered(finished=finished), retry_failed=True)
    assert carryover.left == 1
    assert taken(carryover, iter([job(0), job(1)])) == [None, (1, True)]


def test_an_earlier_outputs_lines_are_read_in_step_with_the_input_and_closed() -> None:
    previous = lines(line(0), line(1, ok=False), line(2), line(3))
    carryover = Carryover(Recovered(previous=previous), retry_failed=False)
    bad = LineError(2, 3, "req-2", "invalid_json", "not JSON")  # asked too: the files are read in step
    assert taken(carryover, iter([job(0), job(1), bad])) == [(0, True), (1, False), (2, True)]
    carryover.close()
    with pytest.raises(StopIteration):
        next(previous)


def test_an_unreadable_earlier_line_is_done_again() -> None:
    carryover = Carryover(Recovered(finished={0: Entry(0, True, b"torn")}), retry_failed=False)
    assert carryover.take(job(0)) is None


def test_an_earlier_line_of_another_custom_id_is_refused_naming_the_input_line() -> None:
    carryover = Carryover(Recovered(previous=lines(line(0))), retry_failed=False)
    with pytest.raises(ConfigError, match=r"^the earlier output does not match the input at line 1: it has custom_id "
                                          r"'req-0' where the input has 'other'; run with --restart$"):
        carryover.take(job(0, "other"))
