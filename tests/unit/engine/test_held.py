"""The held 401/403/404 policy alone: which held lines a success confirms, and what the end decides."""

from __future__ import annotations

from batchrun.engine.held import Held
from batchrun.records import Result


def refused(index: int, dispatched: int, status: int = 403) -> Result:
    return Result(index, f"req-{index}", status, None, {"error": {"message": "no"}}, {"code": "forbidden"},
                  unconfirmed=True, dispatched=dispatched)


def answered(index: int, dispatched: int) -> Result:
    return Result(index, f"req-{index}", 200, None, {"choices": []}, None, dispatched=dispatched)


def test_a_success_confirms_only_the_lines_sent_before_it_and_keeps_the_later_ones_held() -> None:
    held = Held()
    for index, dispatched in ((0, 1), (1, 3), (2, 7)):
        held.hold(refused(index, dispatched))
    own = held.confirmed_by(answered(5, 4))
    assert [line.index for line in own] == [0, 1]
    assert held  # the line sent after the success is still undecided
    assert [line.index for line in held.confirmed_by(answered(6, 9))] == [2]
    assert not held


def test_a_success_with_nothing_held_confirms_nothing() -> None:
    held = Held()
    assert not held
    assert held.confirmed_by(answered(0, 1)) == []


def test_a_stopped_run_writes_none_of_the_held_lines_and_forgets_them() -> None:
    held = Held()
    held.hold(refused(0, 1))
    assert held.at_end(stopped=True, no_such_path=None) == ([], None)
    assert not held


def test_a_run_where_no_line_succeeded_and_the_path_was_404d_stops_instead_of_writing() -> None:
    held = Held()
    held.hold(refused(0, 1, status=404))
    assert held.at_end(stopped=False, no_such_path="404 for /v1/chat/completions") == (
        [], "404 for /v1/chat/completions")
    assert not held


def test_a_run_that_finished_every_line_writes_the_held_ones_as_their_own_failures_in_sent_order() -> None:
    held = Held()
    held.hold(refused(3, 2))
    held.hold(refused(1, 5))
    lines, stop = held.at_end(stopped=False, no_such_path=None)
    assert ([line.index for line in lines], stop) == ([3, 1], None)
    assert not held


def test_nothing_held_at_the_end_decides_nothing_even_with_a_path_404d() -> None:
    assert Held().at_end(stopped=False, no_such_path="404") == ([], None)
