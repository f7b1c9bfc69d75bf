"""The progress display as a function of the terminal's width: what reads at 80 columns, what
is dropped, never a field cut."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from batchrun.accounting.budget import Budget
from batchrun.accounting.pricing import load_prices
from batchrun.cli.progress import BarLogHandler, BarProgress, counters, progress_lines
from batchrun.pacing import CircuitBreaker, Pacer
from batchrun.records import Result
from batchrun.stats import RunStats

from ...helpers import FakeClock
from ...screen import screen

COUNTERS = ["failed 3", "spent $0.0123 of $1.0000", "in flight 16/16", "429s 1,204", "retries 1,311",
            "rpm 2,950/3,000", "tpm 120,000/400,000", "projected $0.0273", "87,309 tokens"]


@pytest.mark.parametrize("width", [20, 40, 60, 80, 100, 120, 160, 240])
def test_no_line_reaches_the_last_column_and_no_field_is_cut(width: int) -> None:
    first, second = progress_lines(123_456, 1_000_000, 1234.5, COUNTERS, width)
    assert len(first) < width and len(second) < width
    shown = second.strip().split(" · ")
    assert shown == COUNTERS[:len(shown)]  # whole fields, in order, the least telling dropped first


def test_at_80_columns_the_bar_count_rate_eta_and_the_counters_that_matter_read() -> None:
    first, second = progress_lines(900, 2_000, 21.43, COUNTERS, 80)
    assert first.startswith(" 45%|█") and "| 900/2,000 21.4 lines/s ETA 51 s" in first
    assert len(first.split("|")[1]) >= 20  # a bar, not one character
    assert second == "  failed 3 · spent $0.0123 of $1.0000 · in flight 16/16 · 429s 1,204"


def test_wider_shows_more_counters_and_a_bar_no_wider_than_40() -> None:
    first, second = progress_lines(900, 2_000, 21.43, COUNTERS, 120)
    assert len(first.split("|")[1]) == 40
    assert second.endswith(" · retries 1,311 · rpm 2,950/3,000")
    _, wide = progress_lines(900, 2_000, 21.43, COUNTERS, 240)
    assert wide.strip() == " · ".join(COUNTERS)


def test_too_narrow_for_a_bar_the_figures_stay() -> None:
    first, _ = progress_lines(900, 2_000, 21.43, COUNTERS, 45)
    assert first == " 45% 900/2,000 21.4 lines/s ETA 51 s"


def test_without_a_total_or_a_rate_there_is_no_bar_and_no_eta() -> None:
    assert progress_lines(900, None, 21.43, [], 80)[0] == "900 lines 21.4 lines/s"
    assert progress_lines(0, 2_000, None, [], 80)[0].endswith("| 0/2,000 -- lines/s")


def test_the_counters_of_a_run_with_a_cap_and_a_pacer() -> None:
    stats = RunStats(Path("o.jsonl"), Path("o.errors.jsonl"), total_hint=10)
    stats.budget = Budget(1.0, load_prices(), ["gpt-4o-mini"], spent=0.25)
    clock = FakeClock()
    stats.pacer = Pacer(concurrency=16, breaker=CircuitBreaker(threshold=10, give_up=100, clock=clock), clock=clock,
                        rpm=600)
    stats.record(Result(0, "c0", 500, None, {"error": {"code": "server_error"}}, None))
    fields = counters(stats)
    assert fields[:6] == ["failed 1", "spent $0.2500 of $1.0000", "in flight 0/16", "429s 0", "retries 0",
                          "rpm 0/600"]


def test_a_log_line_goes_above_the_two_lines_which_are_drawn_again_below_it() -> None:
    terminal = io.StringIO()
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    stats = RunStats(Path("o.jsonl"), Path("o.errors.jsonl"), total_hint=4)
    progress = BarProgress(terminal, min_interval=0, width=80)
    handler = BarLogHandler(terminal)
    progress.started(stats)
    for index in range(4):
        result = Result(index, f"c{index}", 200, None, {}, None)
        stats.record(result)
        progress.written(result, stats)
        handler.emit(_record(f"line {index} was odd"))
    progress.close(stats)
    rows = screen(terminal.getvalue())
    assert rows[:4] == [f"line {index} was odd" for index in range(4)]
    assert rows[4].startswith("100%|") and "| 4/4 " in rows[4] and rows[5].startswith("  failed 0 · ")
    assert rows[6:] == [""]  # closed: the cursor is below the lines, which stay


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("batchrun", logging.WARNING, __file__, 1, message, None, None)


def test_a_start_that_did_no_line_leaves_no_progress_on_screen() -> None:
    terminal = io.StringIO()
    stats = RunStats(Path("o.jsonl"), Path("o.errors.jsonl"), total_hint=4)
    progress = BarProgress(terminal, min_interval=0, width=80)
    handler = BarLogHandler(terminal)
    progress.started(stats)
    handler.emit(_record("stopping: the endpoint has no /v1/chat/completions"))
    progress.close(stats)
    terminal.write("stopped early: ...\n")
    assert screen(terminal.getvalue()) == ["stopping: the endpoint has no /v1/chat/completions",
                                           "stopped early: ...", ""]


def test_the_lines_are_redrawn_at_most_every_min_interval() -> None:
    terminal, now = io.StringIO(), [100.0]
    stats = RunStats(Path("o.jsonl"), Path("o.errors.jsonl"), total_hint=20)
    progress = BarProgress(terminal, min_interval=1.0, width=80, clock=lambda: now[0])
    progress.started(stats)
    for index in range(20):
        result = Result(index, f"c{index}", 200, None, {}, None)
        stats.record(result)
        progress.written(result, stats)
        now[0] += 0.25
    assert terminal.getvalue().count("\x1b[K\n") == 1 + 4  # the first draw, then one a second (at 101 … 104)
