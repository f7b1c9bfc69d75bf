"""Runs side by side alone: each run's figures from its report, its change against the first,
labels by place and file name, and every run's warnings."""

from __future__ import annotations

from typing import Any

import pytest

from batchrun.accounting.compare import SCHEMA, compare, figures


def report(source: str | None, *, succeeded: int, failed: int, tokens: int, cost: float | None,
           p50: float | None = None, wall: float | None = None, timeline: dict[str, float] | None = None,
           warnings: tuple[str, ...] = ()) -> dict[str, Any]:
    doc: dict[str, Any] = {"lines": succeeded + failed, "requests": {"succeeded": succeeded, "failed": failed},
                           "tokens": {"total": tokens}, "cost_usd": cost, "warnings": list(warnings),
                           "latency_ms": None if p50 is None else {"p50": p50, "p95": p50 * 2, "p99": p50 * 3},
                           "wall_time_s": wall, "timeline": timeline}
    if source is not None:
        doc["source"] = source
    return doc


def test_a_reports_figures() -> None:
    assert figures(report("a.jsonl", succeeded=3, failed=1, tokens=40, cost=0.5, p50=100.0, wall=2.0)) == {
        "lines": 4, "failed": 1, "failed_pct": 25.0, "tokens": 40, "cost_usd": 0.5,
        "p50_ms": 100.0, "p95_ms": 200.0, "p99_ms": 300.0, "duration_s": 2.0}


def test_a_file_without_lines_latency_or_wall_time_has_nulls_and_a_timeline_gives_its_duration() -> None:
    shown = figures(report(None, succeeded=0, failed=0, tokens=0, cost=None, timeline={"start": 10.0, "end": 12.5}))
    assert (shown["failed_pct"], shown["p50_ms"], shown["cost_usd"], shown["duration_s"]) == (None, None, None, 2.5)
    assert figures(report(None, succeeded=1, failed=0, tokens=1, cost=None))["duration_s"] is None


def test_runs_are_compared_with_the_first_in_the_order_given() -> None:
    first = report("/data/mon.results.jsonl", succeeded=9, failed=1, tokens=100, cost=None, p50=50.0, wall=10.0,
                   warnings=("2 lines have no price",))
    second = report("/data/tue.results.jsonl", succeeded=10, failed=0, tokens=150, cost=2.0, p50=40.0, wall=8.0)
    doc = compare([first, second])
    assert doc["schema"] == SCHEMA
    assert [run["label"] for run in doc["runs"]] == ["1. mon.results.jsonl", "2. tue.results.jsonl"]
    assert doc["runs"][0]["change"] is None
    change = doc["runs"][1]["change"]
    assert (change["failed"], change["tokens"], change["p50_ms"], change["duration_s"]) == (-1, 50, -10.0, -2.0)
    assert change["failed_pct"] == pytest.approx(-10.0)
    assert change["cost_usd"] is None  # unknown on one side: no change to show
    assert doc["warnings"] == ["1. mon.results.jsonl: 2 lines have no price"]


def test_two_runs_of_one_file_are_told_apart_by_place_and_a_run_is_named_by_its_input_else_run() -> None:
    by_input = report(None, succeeded=1, failed=0, tokens=1, cost=0.1) | {"input": {"path": "in/x.jsonl"}}
    unnamed = report(None, succeeded=1, failed=0, tokens=1, cost=0.1)
    same = report("a.jsonl", succeeded=1, failed=0, tokens=1, cost=0.1)
    labels = [run["label"] for run in compare([same, same, by_input, unnamed])["runs"]]
    assert labels == ["1. a.jsonl", "2. a.jsonl", "3. x.jsonl", "4. run"]
