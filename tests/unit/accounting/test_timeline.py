"""The report's timeline and failure examples: bounded however many lines, exact in their totals."""

from __future__ import annotations

import math
import random
from typing import Any

import orjson
import pytest

from batchrun.accounting.pricing import builtin_prices
from batchrun.accounting.report import Report, report_file
from batchrun.accounting.timeline import MAX_BUCKETS, Timeline

from .test_report import DATA

T0 = 1_790_000_000.0  # an epoch second in 2026


def line(i: int, finished: float, *, status: int = 200, code: str = "server_error", took: float = 0.5,
         message: str = "boom", **extra: Any) -> dict[str, Any]:
    """An output line of batchrun's, answered at ``finished`` after ``took`` seconds on the wire."""
    times = {"attempts": 1, "latency_ms": took * 1000, "started_at": round(finished - took, 3),
             "finished_at": round(finished, 3), **extra}
    if status == 200:
        body = {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}
        return {"custom_id": f"c{i}", "response": {"status_code": 200, "request_id": "r", "body": body},
                "error": None, "batchrun": times}
    error = {"code": code, "message": message}
    return {"custom_id": f"c{i}", "response": {"status_code": status, "request_id": "r", "body": {"error": error}},
            "error": None, "batchrun": {**times, "error": error}}


def test_a_million_lines_over_a_month_stay_in_at_most_240_buckets_with_exact_sums() -> None:
    timeline, lines = Timeline(), 1_000_000
    span = 30 * 86_400.0
    most = 0
    rng = random.Random(7)
    for i in range(lines):
        # In no order of time, as a file's lines are: input order, not finishing order.
        finished = T0 + (i * 7_919 % lines) * span / lines
        timeline.add(finished - 1.0, finished, failed=i % 10 == 0, rate_limited=i % 7 == 0, retries=i % 3,
                     tokens=i % 100, cost_usd=0.25, latency_ms=rng.uniform(1.0, 600_000.0))
        if i % 1_000 == 0:
            most = max(most, timeline.buckets)
    doc = timeline.to_dict()
    assert doc is not None
    buckets = doc["buckets"]
    assert max(most, timeline.buckets, len(buckets)) <= MAX_BUCKETS
    assert doc["bucket_s"] * MAX_BUCKETS >= span > doc["bucket_s"] * MAX_BUCKETS / 4  # no wider than needed
    assert sum(b["lines"] for b in buckets) == lines
    assert sum(b["failed"] for b in buckets) == lines // 10
    assert sum(b["rate_limited"] for b in buckets) == len(range(0, lines, 7))
    assert sum(b["retries"] for b in buckets) == sum(i % 3 for i in range(lines))
    assert sum(b["tokens"] for b in buckets) == sum(i % 100 for i in range(lines))
    assert sum(b["cost_usd"] for b in buckets) == 0.25 * lines  # quarters add up exactly
    # Each bucket's latencies, 1 ms to 10 min, held in a bounded number of counters.
    assert max(bucket.latency.buckets for bucket in timeline._buckets.values()) <= math.ceil(
        math.log(600_000) / math.log(1.05 / 0.95)) + 1
    assert doc["start"] == T0 - 1.0 and doc["end"] == pytest.approx(T0 + span - span / lines)


def test_each_line_is_in_the_bucket_its_finish_falls_in_after_the_buckets_widen() -> None:
    rng = random.Random(3)
    finishes = [T0 + rng.uniform(0, 5_000.0) for _ in range(5_000)]
    timeline = Timeline()
    for finished in finishes:
        timeline.add(finished - 0.2, finished, failed=False, rate_limited=0, retries=0, tokens=1, cost_usd=0.0,
                     latency_ms=200.0)
    doc = timeline.to_dict()
    assert doc is not None
    width, start = doc["bucket_s"], doc["start"]
    assert width > 0.125  # it had to widen
    assert start == min(finishes) - 0.2
    rows = doc["buckets"]
    first = math.floor(min(finishes) / width)
    assert [row["t"] for row in rows] == [round((first + n) * width - start, 3) for n in range(len(rows))]
    expected = [0] * len(rows)
    for finished in finishes:
        expected[math.floor(finished / width) - first] += 1
    assert [row["lines"] for row in rows] == expected
    assert all(row["latency_ms"] == {"p50": pytest.approx(200.0, rel=0.05), "p95": pytest.approx(200.0, rel=0.05)}
               if row["lines"] else row["latency_ms"] == {"p50": None, "p95": None} for row in rows)


def test_a_lines_429s_retries_cost_and_tokens_land_in_its_bucket() -> None:
    report = Report(builtin_prices())
    report.add_record(line(0, T0 + 0.5, rate_limited=2, attempts=3))
    report.add_record(line(1, T0 + 10.13, status=429, code="rate_limit_exceeded"))
    report.add_record(line(2, T0 + 10.2, batch_id="batch_1", waited_ms=1_500))  # priced at the Batch API's price
    doc = report.to_dict()
    timeline = doc["timeline"]
    assert timeline["start"] == T0 and timeline["end"] == T0 + 10.2 and timeline["bucket_s"] == 0.125
    rows = timeline["buckets"]
    # From the first request sent (0 s) to the last answer (10.25 s), empty buckets too.
    assert len(rows) == 82 and sum(row["lines"] for row in rows) == 3
    first, last = rows[4], rows[-1]
    assert first["t"] == 0.5
    assert (first["lines"], first["rate_limited"], first["retries"], first["tokens"]) == (1, 2, 2, 110)
    online = (100 * 0.15 + 10 * 0.6) / 1e6
    assert first["cost_usd"] == pytest.approx(online)
    assert (last["lines"], last["failed"], last["rate_limited"]) == (2, 1, 1)
    assert last["cost_usd"] == pytest.approx(online / 2)
    assert sum(row["cost_usd"] for row in rows) == pytest.approx(doc["cost_usd"])
    assert last["latency_ms"]["p50"] == pytest.approx(500.0, rel=0.05)
    assert last["waited_s"] == 1.5 and sum(row["waited_s"] for row in rows) == 1.5


def test_failure_examples_keep_five_of_each_code_cut_to_300_characters() -> None:
    report = Report()
    for i in range(12):
        report.add_record(line(i, T0 + i, status=500, message="x" * 1_000 + str(i)))
    for i in range(12, 14):
        report.add_record(line(i, T0 + i, status=400, code="invalid_value", message=f"bad {i}"))
    report.add_record({"custom_id": "t", "response": None, "error": {"code": "request_timeout"}})
    examples = report.to_dict()["failure_examples"]
    assert list(examples) == ["server_error", "invalid_value", "request_timeout"]  # most frequent first
    assert [e["custom_id"] for e in examples["server_error"]] == ["c0", "c1", "c2", "c3", "c4"]
    assert all(e["message"] == "x" * 300 for e in examples["server_error"])
    assert examples["invalid_value"] == [{"custom_id": "c12", "message": "bad 12"},
                                         {"custom_id": "c13", "message": "bad 13"}]
    assert examples["request_timeout"] == [{"custom_id": "t", "message": ""}]
    assert Report().to_dict()["failure_examples"] == {}


def test_state_restore_and_merge_of_different_widths_equal_one_report_of_every_line() -> None:
    short = [line(i, T0 + i * 0.1, status=500 if i % 4 == 0 else 200) for i in range(100)]  # 10 s: narrow
    long = [line(i, T0 + 50 + i * 40.0, status=400 if i % 5 == 0 else 200, code="invalid_value")
            for i in range(100, 200)]  # over an hour: wide
    whole, first, second = Report(), Report(), Report()
    for record in short + long:
        whole.add_record(record)
    for record in short:
        first.add_record(record)
    for record in long:
        second.add_record(record)
    narrow, wide = first.to_dict()["timeline"], second.to_dict()["timeline"]
    assert narrow["bucket_s"] < wide["bucket_s"]
    first.merge(second)
    expected = whole.to_dict()
    merged = first.to_dict()
    assert merged["timeline"]["bucket_s"] == expected["timeline"]["bucket_s"]
    compare(merged["timeline"], expected["timeline"])
    assert merged["failure_examples"] == expected["failure_examples"]
    restored = Report()
    restored.restore(orjson.loads(orjson.dumps(first.state())))
    assert restored.to_dict()["timeline"] == merged["timeline"]
    assert restored.to_dict()["failure_examples"] == merged["failure_examples"]
    # Merging into an empty report (a sharded run's first part) takes the other's timeline as it is.
    empty = Report()
    empty.merge(second)
    assert empty.to_dict()["timeline"] == wide


def compare(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Timelines equal but for the order cost was summed in."""
    assert {**got, "buckets": None} == {**expected, "buckets": None}
    assert len(got["buckets"]) == len(expected["buckets"])
    for mine, theirs in zip(got["buckets"], expected["buckets"], strict=True):
        assert {**mine, "cost_usd": None} == {**theirs, "cost_usd": None}
        assert mine["cost_usd"] == pytest.approx(theirs["cost_usd"])


def test_a_state_saved_before_lines_were_timed_restores_without_them() -> None:
    report = Report()
    report.add_record(line(0, T0, status=500))
    state = report.state()
    del state["timeline"], state["failure_examples"]
    restored = Report()
    restored.restore(state)
    doc = restored.to_dict()
    assert doc["lines"] == 1 and doc["timeline"] is None and doc["failure_examples"] == {}


def test_a_file_without_timestamps_has_no_timeline() -> None:
    doc = report_file(DATA / "openai_batch_output.jsonl").to_dict()
    assert doc["lines"] == 4 and doc["timeline"] is None
    errors = report_file(DATA / "openai_batch_errors.jsonl").to_dict()
    assert errors["timeline"] is None
    assert sum(len(examples) for examples in errors["failure_examples"].values()) == 5


def add(timeline: Timeline, started: float, finished: float, waited_ms: float | None = None) -> None:
    timeline.add(started, finished, failed=False, rate_limited=0, retries=0, tokens=1, cost_usd=0.0, latency_ms=1.0,
                 waited_ms=waited_ms)


def test_a_lines_time_on_the_wire_is_split_exactly_over_the_buckets_it_overlaps() -> None:
    timeline = Timeline()
    add(timeline, T0 + 0.05, T0 + 0.4, waited_ms=250.0)  # 0.075 + 0.125 + 0.125 + 0.025 s, widths of 0.125 s
    add(timeline, T0 + 0.25, T0 + 0.3, waited_ms=100.0)  # 0.05 s within the third
    add(timeline, T0 + 0.3, T0 + 0.3)  # no time on the wire
    doc = timeline.to_dict()
    assert doc is not None and doc["bucket_s"] == 0.125
    assert [row["in_flight"] for row in doc["buckets"]] == [0.6, 1.0, 1.4, 0.2]
    assert [row["waited_s"] for row in doc["buckets"]] == [0.0, 0.0, 0.1, 0.25]  # where each line finished
    # Kept by state and restore; a state saved before these were kept restores them as none.
    again = Timeline.restore(orjson.loads(orjson.dumps(timeline.state())))
    assert again.to_dict() == doc
    old = timeline.state()
    assert old is not None
    old["buckets"] = [row[:8] for row in old["buckets"]]  # the key and the 7 items buckets had before
    rows = Timeline.restore(old).to_dict()["buckets"]  # type: ignore[index]
    assert [(row["lines"], row["in_flight"], row["waited_s"]) for row in rows] == [(0, 0, 0), (0, 0, 0), (2, 0, 0), (1, 0, 0)]


def test_a_line_longer_than_the_timeline_and_sent_before_it_widens_it_first() -> None:
    timeline = Timeline()
    add(timeline, T0, T0 + 1.0)
    add(timeline, T0 - 2 * 3_600.0, T0 + 2.0)  # two hours on the wire: 57,600 of the narrowest buckets
    doc = timeline.to_dict()
    assert doc is not None
    assert timeline.buckets <= MAX_BUCKETS and len(doc["buckets"]) <= MAX_BUCKETS
    busy = sum(row["in_flight"] for row in doc["buckets"]) * doc["bucket_s"]
    assert busy == pytest.approx(2 * 3_600.0 + 3.0, abs=doc["bucket_s"] * 0.01 * len(doc["buckets"]))
    assert doc["buckets"][0]["in_flight"] == 1.0 and doc["start"] == T0 - 2 * 3_600.0


def test_timelines_merged_at_different_widths_keep_the_time_in_flight_and_waiting() -> None:
    rng = random.Random(3)
    lines = [(finished - rng.uniform(0.0, 30.0), finished, rng.uniform(0.0, 5_000.0))
             for finished in (T0 + rng.uniform(0.0, 600.0 if i % 2 else 20.0) for i in range(400))]
    whole, short, long = Timeline(), Timeline(), Timeline()
    for i, (started, finished, waited) in enumerate(lines):
        add(whole, started, finished, waited)
        add(long if i % 2 else short, started, finished, waited)
    assert short.width < long.width
    short.merge(long)
    got, expected = short.to_dict(), whole.to_dict()
    assert got is not None and expected is not None and got["bucket_s"] == expected["bucket_s"]
    for mine, theirs in zip(got["buckets"], expected["buckets"], strict=True):
        assert mine["in_flight"] == pytest.approx(theirs["in_flight"], abs=0.011)
        assert mine["waited_s"] == pytest.approx(theirs["waited_s"], abs=0.002)
    assert sum(row["waited_s"] for row in got["buckets"]) == pytest.approx(sum(w for *_, w in lines) / 1000, abs=0.1)
    assert sum(row["in_flight"] for row in got["buckets"]) * got["bucket_s"] == pytest.approx(
        sum(f - s for s, f, _ in lines), rel=0.01)
