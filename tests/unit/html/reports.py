"""Report documents built by hand, in the shape `Report.to_dict` and a run's report JSON have."""

from __future__ import annotations

import math
from typing import Any

from batchrun.accounting.histogram import LogHistogram


def latency_histogram(n: int = 500) -> dict[str, Any]:
    histogram = LogHistogram()
    for i in range(n):
        histogram.add(80 + 400 * (i / n) ** 3)
    return histogram.state()


def timeline(buckets: int = 30, bucket_s: float = 2.0) -> dict[str, Any]:
    rows = []
    for i in range(buckets):
        lines = 40 + int(10 * math.sin(i / 4))
        rows.append({"t": i * bucket_s, "lines": lines, "tokens": lines * 120, "failed": int(i % 7 == 3),
                     "rate_limited": 2 if i % 5 == 1 else 0, "retries": 3 if i % 5 == 1 else 0,
                     "cost_usd": lines * 0.0002, "in_flight": 8.0 + 4 * math.sin(i / 3),
                     "waited_s": 3.0 if i % 6 == 2 else 0.0, "latency_ms": {"p50": 100.0 + i, "p95": 250.0 + 2 * i}})
    return {"start": 1_790_000_000.0, "end": 1_790_000_000.0 + buckets * bucket_s, "bucket_s": bucket_s, "buckets": rows}


def model(prompt: int, cached: int, completion: int, reasoning: int, cost: float | None, requests: int = 100) -> dict[str, Any]:
    tokens = {"prompt": prompt, "completion": completion, "total": prompt + completion, "cached": cached,
              "reasoning": reasoning}
    return {"requests": requests, "succeeded": requests - 1, "failed": 1, "responses_without_usage": 0, "tokens": tokens,
            "priced_as": None, "cost_usd": cost, "batch_api": None}


def run_doc(*, source: str = "nightly.results.jsonl", with_timeline: bool = True, cost: float = 0.25,
            p50: float = 110.0, wall: float = 60.0, failed: int = 12) -> dict[str, Any]:
    models = {"gpt-4o-mini": model(100_000, 20_000, 40_000, 0, cost * 0.4),
              "o4-mini": model(50_000, 0, 90_000, 60_000, cost * 0.6)}
    return {
        "schema": "batchrun.report/1", "status": "failed", "exit_code": 1, "stop_reason": None,
        "input_lines": 1200, "lines_finished": 1200,
        "input": {"path": "nightly.jsonl", "size": 1, "digest": "x"},
        "options": {"base_url": "https://user:sk-secret@llm.example:8443/v1?api-key=sk-query"},
        "source": source, "lines": 1200, "unreadable_lines": 0,
        "requests": {"succeeded": 1200 - failed, "failed": failed,
                     "by_error_code": {"rate_limit_exceeded": failed - 4, "server_error": 4}, "by_status": {}},
        "retries": 40, "rate_limited": 30, "hit_output_cap": 0,
        "tokens": {"prompt": 150_000, "completion": 130_000, "total": 280_000, "cached": 20_000, "reasoning": 60_000},
        "models": models, "cost_usd": cost, "cost_usd_priced": cost, "batch_api": None, "prices": {},
        "latency_ms": {"count": 1200, "mean": p50 * 1.2, "p50": p50, "p95": p50 * 2.5, "p99": p50 * 4, "max": p50 * 6,
                       "relative_error": 0.005},
        "time_s": None, "wall_time_s": wall, "throughput_rps": 20.0, "tokens_per_s": 4000.0, "warnings": [],
        "timeline": timeline() if with_timeline else None,
        "failure_examples": {"rate_limit_exceeded": [{"custom_id": "req-7", "message": "Rate limit reached"}],
                             "server_error": [{"custom_id": "req-9", "message": "upstream <b>boom</b>"}]},
    }
