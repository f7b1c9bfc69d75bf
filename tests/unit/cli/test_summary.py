"""The end-of-run summary: each figure says what it counts (the output's lines, or this start's),
time is per line rather than summed over lines that overlap, and a start that stopped before any
line was done prints why and what next, not a table of zeros."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.accounting.pricing import load_prices
from batchrun.accounting.report import Report
from batchrun.cli.summary import format_summary
from batchrun.cli.tables import render_report
from batchrun.pacing import CircuitBreaker, Pacer
from batchrun.records import Result
from batchrun.stats import RunStats

from ...helpers import FakeClock
from ...rawserver import RawServer, Seen, http, replying, run


def _stats(lines: int, *, carried_over: int = 0, rate_limited: int = 0) -> RunStats:
    stats = RunStats(Path("out.jsonl"), Path("out.errors.jsonl"), Report(load_prices(), source="out.jsonl"),
                     total_hint=lines)
    for index in range(lines):
        body = {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
        stats.record(Result(index, f"c{index}", 200, None, body, None, attempts=1 + (index < rate_limited),
                            rate_limited=int(index < rate_limited), latency_ms=80.0, wire_ms=80.0,
                            waited_ms=66_650.0, carried_over=index < carried_over))
    stats.report.set_wall_time(60.0)
    return stats


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_waiting_is_a_mean_per_line_not_a_sum_over_lines_that_overlap() -> None:
    """100 lines that each waited 66.65 s in a 60 s run: 1h51m05s summed, which read like a bug."""
    text = _flat(render_report(_stats(100).report.to_dict()))
    assert "time per line, on average: 80 ms on the wire, 66.65 s waiting to be sent (pacing, backoff)" in text
    assert "1h51m05s" not in text


def test_the_two_429_counts_say_what_they_count() -> None:
    stats = _stats(10, rate_limited=4)
    clock = FakeClock()
    stats.pacer = Pacer(concurrency=8, breaker=CircuitBreaker(threshold=10, give_up=100, clock=clock), clock=clock,
                        rpm=600)
    stats.pacer.rate_limited = 1
    text = _flat(format_summary(stats, "out.report.json"))
    assert "retries 4; 4 answers were 429" in text  # the output's lines
    assert "pacing, this start: limits 600 rpm; 1 answer was 429" in text


def test_a_resumed_run_says_which_lines_this_start_finished() -> None:
    text = _flat(format_summary(_stats(1_000, carried_over=831), "out.report.json"))
    assert "requests 1,000 lines: 1,000 succeeded, 0 failed" in text
    assert "resumed: of the 1,000 lines above, 831 were finished by earlier starts, 169 by this one" in text


def test_one_line_is_one_line() -> None:
    text = format_summary(_stats(1, carried_over=1), "out.report.json")
    assert "1 line: 1 succeeded" in text and "of the 1 line above, 1 was finished" in text
    assert "1 lines" not in text


def not_found(seen: Seen, n: int) -> bytes:
    return http(404, b"<html>404 Not Found</html>", {"content-type": "text/html"})


@pytest.mark.parametrize("n", [200, 3])
async def test_a_stop_before_any_line_was_done_prints_why_and_what_next_only(tmp_path: Path, n: int) -> None:
    with RawServer(replying(not_found)) as server:
        stats, _ = await run(tmp_path, server.base_url, n=n, concurrency=2)
    assert stats.exit_code == 4 and stats.written == 0
    text = format_summary(stats, "out.report.json")
    assert text.startswith("stopped early: the endpoint has no /v1/chat/completions"), text
    assert "batchrun report" not in text and "0 succeeded" not in text and "pacing" not in text
    assert text.splitlines()[-1] == "report: out.report.json"
