"""What a run did and the exit code it maps to (docs/contract.md, "Exit codes"), counted alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.records import Result
from batchrun.stats import EXIT_BUDGET, EXIT_FAILED_LINES, EXIT_OK, EXIT_STOPPED, RunStats


def stats() -> RunStats:
    return RunStats(Path("out.jsonl"), Path("out.errors.jsonl"), started=100.0)


def ok(index: int, tokens: int = 10, **fields: object) -> Result:
    body = {"usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}}
    return Result(index, f"req-{index}", 200, None, body, None, attempts=1, **fields)  # type: ignore[arg-type]


def failed(index: int) -> Result:
    return Result(index, f"req-{index}", 400, None, {"error": {}}, {"code": "invalid_value", "message": "no"}, attempts=1)


def test_every_line_succeeded_is_exit_0_and_complete() -> None:
    run = stats()
    run.record(ok(0))
    assert (run.exit_code, run.status, run.succeeded, run.failed) == (EXIT_OK, "complete", 1, 0)


def test_a_failed_line_is_exit_1_and_still_complete() -> None:
    run = stats()
    run.record(ok(0))
    run.record(failed(1))
    assert (run.exit_code, run.status, run.failures_by_code) == (EXIT_FAILED_LINES, "complete", {"invalid_value": 1})


@pytest.mark.parametrize(("code", "status"), [(EXIT_BUDGET, "budget"), (EXIT_STOPPED, "stopped")])
def test_a_stop_is_its_own_code_whatever_the_lines_did(code: int, status: str) -> None:
    run = stats()
    run.record(failed(0))
    run.stop_reason, run.stop_code = "why", code
    assert (run.exit_code, run.status) == (code, status)


def test_this_starts_lines_and_tokens_leave_out_what_was_carried_over_or_answered_by_a_batch() -> None:
    run = stats()
    run.record(ok(0, tokens=10))
    run.record(ok(1, tokens=20, carried_over=True))
    run.record(ok(2, tokens=40, batch_id="batch_1"))
    assert (run.written, run.carried_over, run.via_batch, run.sent_this_start, run.tokens_this_start) == (3, 1, 1, 1, 10)
    assert run.report.usage().total == 70  # the report counts every line


def test_a_saved_report_restores_its_lines_as_carried_over() -> None:
    earlier = stats()
    earlier.record(ok(0))
    earlier.record(failed(1))
    run = stats()
    run.restore(earlier.report.state(), 2)
    assert (run.written, run.carried_over, run.succeeded, run.failed, run.sent_this_start) == (2, 2, 1, 1, 0)


def test_a_finished_run_counts_its_reports_lines_and_outcomes_as_up_to_date() -> None:
    run = stats()
    run.count_finished_run({"lines": 5, "requests": {"succeeded": 4, "failed": 1}})
    assert (run.up_to_date, run.written, run.carried_over, run.succeeded, run.failed, run.exit_code) == (
        True, 5, 5, 4, 1, EXIT_FAILED_LINES)


def test_the_wall_time_is_from_start_to_finish() -> None:
    run = stats()
    run.finished = 112.5
    assert run.wall_s == 12.5
