"""``--limit N`` alone: the lines a start may feed, when a limit cuts the input, and how a start
that wrote its limit ends."""

from __future__ import annotations

import inspect
from collections.abc import Generator
from pathlib import Path

import pytest

from batchrun.smoke import cut_at, first_lines, stop
from batchrun.stats import EXIT_FAILED_LINES, EXIT_OK, EXIT_STOPPED, RunStats


def items(count: int) -> Generator[int, None, None]:
    yield from range(count)


def test_without_a_limit_every_line_is_fed() -> None:
    assert list(first_lines(items(5), None, 0)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("limit", "done", "fed"), [(3, 0, 3), (3, 2, 1), (3, 3, 0), (3, 5, 0), (10, 0, 5)])
def test_a_limit_counts_the_lines_earlier_starts_finished(limit: int, done: int, fed: int) -> None:
    reader = items(5)
    assert len(list(first_lines(reader, limit, done))) == fed
    assert inspect.getgeneratorstate(reader) == inspect.GEN_CLOSED  # closed at the limit, not left open


@pytest.mark.parametrize(("limit", "lines", "cut"), [(None, 10, None), (3, 10, 3), (10, 10, None), (12, 10, None)])
def test_a_limit_cuts_only_an_input_it_leaves_lines_of(limit: int | None, lines: int, cut: int | None) -> None:
    assert cut_at(limit, lines) == cut


@pytest.mark.parametrize(("failed", "code"), [(0, EXIT_OK), (1, EXIT_FAILED_LINES)])
def test_a_start_that_wrote_its_limit_ends_with_their_code_and_says_what_next(failed: int, code: int) -> None:
    stats = RunStats(Path("out.jsonl"), Path("out.errors.jsonl"))
    stats.report.failed = failed
    stats.stop_reason, stats.stop_code = "interrupted", EXIT_STOPPED  # a stop after the last line changes nothing
    stop(stats, 3, 1200, Path("out.jsonl.checkpoint/output.jsonl"))
    assert stats.exit_code == code
    assert stats.stop_reason == ("--limit 3: the first 3 of 1,200 lines are done (their answers: "
                                 "out.jsonl.checkpoint/output.jsonl); the run without --limit sends only the other 1,197")
    assert stats.next_step == "run the command again without --limit (or with a higher one)"
