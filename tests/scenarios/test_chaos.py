"""Chaos: a 10,000-request run through a storm of faults, the circuit breaker with an
endpoint that goes down (and comes back, or not), and hypothesis over random fault schedules.

What must hold whatever happens: one output line per input line, in order; each line's outcome
is its success or a precise error; nothing final is sent twice; the report adds up to the file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun import RetryPolicy, RunConfig, run_batch
from batchrun.accounting.report import report_file
from batchrun.runner import run_async
from batchrun.simulator import Faults, SimulatorConfig, serve
from batchrun.usage import Usage

from ..helpers import FakeClock, chat_line, read_jsonl, succeeded, write_jsonl
from ..rawserver import RawServer, Seen

RETRYABLE_CODES = {"request_timeout", "connection_error", "malformed_response", "server_error",
                   "rate_limit_exceeded"}


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """What batchrun logs at INFO and above, whatever an earlier CLI test did to its logger."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("batchrun")
    handler, level = Keep(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


# -- 10,000 requests through a storm -----------------------------------------------------------

CHAOS_LINES = 10_000
FIGURES_ENV = "CHAOS_FIGURES"  # a path: the run's figures are written there as JSON
CHAOS_FAULTS = Faults(rate_429=0.05, rate_500=0.1, rate_drop=0.03, rate_truncate=0.03, rate_malformed=0.03,
                      rate_timeout=0.01, retry_after_s=0.005, hang_s=1.0)


def chaos_rows(n: int) -> tuple[list[Any], set[str]]:
    """Chat lines; every 50th (2%) has empty messages, which the simulator answers 400."""
    rows = [chat_line(i) for i in range(n)]
    bad = set()
    for i in range(7, n, 50):
        rows[i]["body"]["messages"] = []  # type: ignore[index]
        bad.add(f"req-{i}")
    return rows, bad


async def test_ten_thousand_requests_through_a_storm_of_faults(tmp_path: Path) -> None:
    rows, bad = chaos_rows(CHAOS_LINES)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    policy = RetryPolicy(max_attempts=10, backoff_base=0.001, backoff_max=0.01)
    started = time.monotonic()
    async with serve(SimulatorConfig(faults=CHAOS_FAULTS, seed=7)) as sim:
        # A hung request is closed by the simulator after hang_s; the attempt timeout is above it,
        # so no answer that is only slow (a loaded machine) is taken for lost and bought again.
        config = RunConfig(source, base_url=sim.base_url, concurrency=64, timeout=2 * CHAOS_FAULTS.hang_s,
                           retry=policy, outage_threshold=0)
        with anyio.fail_after(120):
            stats = await run_batch(config)
        seen = sim.stats
    took = time.monotonic() - started

    injected = {"429": seen.responses.get(429, 0),
                "5xx": sum(n for status, n in seen.responses.items() if status >= 500),
                "dropped": seen.drops, "hung": seen.hangs, "truncated": seen.truncations,
                "malformed": seen.malformed}
    assert all(injected.values())

    out = read_jsonl(config.out)
    # One output line per input line, in order.
    assert [o["custom_id"] for o in out] == [r["custom_id"] for r in rows]
    failed = []
    for o in out:
        if o["custom_id"] in bad:  # an HTTP error keeps its response; error is null, as in OpenAI's files
            assert o["response"]["status_code"] == 400 and o["error"] is None
            assert o["batchrun"]["error"]["code"] == "empty_array" and o["batchrun"]["attempts"] >= 1
        elif succeeded(o):
            assert o["response"]["status_code"] == 200 and o["response"]["body"]["choices"]
        else:  # a line whose every attempt met a fault: a precise, retryable error, all attempts used
            failed.append(o)
            failure = o["error"] or o["batchrun"]["error"]  # without a response / with a 5xx one
            assert (o["error"] is None) == (o["response"] is not None and o["response"]["status_code"] >= 500)
            assert failure["code"] in RETRYABLE_CODES and failure["message"]
            assert o["batchrun"]["attempts"] == policy.max_attempts
    assert len(failed) <= 2  # 10 attempts at a ~23% non-429 fault rate: almost never

    # Nothing retried that should not be: each 400 was answered once and never sent again...
    assert seen.responses[400] == len(bad)
    # ...and every retry answers exactly one injected fault (a failed line's last fault was not retried).
    assert stats.retries == sum(injected.values()) - len(failed)
    assert sum(o["batchrun"]["attempts"] for o in out) == CHAOS_LINES + stats.retries == seen.requests
    assert stats.rate_limited == injected["429"]

    # The report's counts match the output file, recomputed from it.
    from_file = report_file(config.out)
    assert (stats.succeeded, stats.failed) == (from_file.succeeded, from_file.failed)
    assert stats.succeeded == CHAOS_LINES - len(bad) - len(failed)
    assert stats.failures_by_code == from_file.by_code
    assert from_file.by_code["empty_array"] == len(bad)
    assert stats.retries == from_file.retries
    assert stats.rate_limited == from_file.rate_limited  # retried 429s travel in the output lines
    assert stats.report.usage() == from_file.usage()
    usage = Usage()
    for o in out:
        if o["error"] is None:
            usage.add(Usage.from_body(o["response"]["body"]) or Usage())
    assert from_file.usage() == usage and usage.total > 0
    saved = orjson.loads(config.report_path.read_bytes())
    assert saved["requests"]["succeeded"] == stats.succeeded and saved["requests"]["failed"] == stats.failed
    assert saved["requests"]["by_error_code"] == dict(from_file.by_code)
    assert saved["retries"] == stats.retries and saved["tokens"] == usage.as_dict()
    errors = read_jsonl(config.errors_path)
    assert [e["custom_id"] for e in errors] == [o["custom_id"] for o in out if not succeeded(o)]

    if figures := os.environ.get(FIGURES_ENV):  # for docs/reliability.md, "Faults, bad input and secrets"
        Path(figures).write_bytes(orjson.dumps(
            {"lines": CHAOS_LINES, "requests": seen.requests, "faults_injected": sum(injected.values()),
             "by_fault": injected, "answered_400": seen.responses[400], "failed_after_retries": len(failed),
             "retries": stats.retries, "seconds": round(took, 1)}, option=orjson.OPT_INDENT_2))


# -- the circuit breaker -----------------------------------------------------------------------

BREAKER_RETRY = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_max=0.05)


async def _wait_for(predicate: Any, timeout: float = 20) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


class Outage:
    """``n`` lines run in the background against a simulator on ``port`` that a test takes down
    and brings back; ``done`` is set once `run_batch` has returned ``stats``."""

    def __init__(self, tmp_path: Path, port: int, n: int, **config: Any) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(n)])
        self.endpoint = SimulatorConfig(port=port, latency_ms=5)
        self.config = RunConfig(source, base_url=f"http://127.0.0.1:{port}/v1", concurrency=8, retry=BREAKER_RETRY,
                                **config)
        self.done = anyio.Event()
        self.stats: Any = None

    async def run(self) -> None:
        self.stats = await run_batch(self.config)
        self.done.set()


async def test_an_endpoint_that_goes_down_pauses_the_run_until_it_is_back(
        tmp_path: Path, free_tcp_port: int, log_lines: list[str]) -> None:
    n = 600
    outage = Outage(tmp_path, free_tcp_port, n, timeout=2)
    async with anyio.create_task_group() as tg:
        async with serve(outage.endpoint) as first:
            tg.start_soon(outage.run)
            await _wait_for(lambda: sum(first.stats.responses.values()) >= 150)
        await anyio.sleep(2.5)  # every connection is cut, and the port refuses new ones
        async with serve(outage.endpoint) as second:
            with anyio.fail_after(30):
                await outage.done.wait()
            sent_after = second.stats.requests

    stats = outage.stats
    out = read_jsonl(outage.config.out)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(n)]
    failed = [o for o in out if o["error"] is not None]
    # No avalanche: only the few lines in flight when the breaker opened could use up their attempts.
    assert len(failed) <= 3 and {o["error"]["code"] for o in failed} <= {"connection_error"}
    assert stats.exit_code == (1 if failed else 0)
    assert sent_after <= n - 150 + 8  # the lines answered before the outage were not sent again
    text = "\n".join(log_lines)
    assert "the endpoint looks down" in text and "pausing dispatch" in text
    assert "probe failed" in text and "the endpoint answers again" in text and "resuming" in text


async def test_an_endpoint_that_never_comes_back_stops_the_run_resumably(
        tmp_path: Path, free_tcp_port: int, log_lines: list[str]) -> None:
    n = 400
    outage = Outage(tmp_path, free_tcp_port, n, max_outage=1.5)
    config = outage.config
    async with anyio.create_task_group() as tg:
        async with serve(outage.endpoint) as first:
            tg.start_soon(outage.run)
            await _wait_for(lambda: sum(first.stats.responses.values()) >= 100)
            answered = sum(first.stats.responses.values())
        with anyio.fail_after(20):
            await outage.done.wait()
    stats = outage.stats
    assert stats.exit_code == 4 and "the endpoint has been unavailable for" in (stats.stop_reason or "")
    assert int((stats.stop_reason or "").split("unavailable for ")[1].split(" s")[0]) >= 2  # past --max-outage
    assert not config.out.exists() and (tmp_path / "in.results.jsonl.checkpoint" / "journal").exists()
    assert "pausing dispatch" in "\n".join(log_lines)

    # It comes back: the same command continues, and sends only what was not answered.
    async with serve(outage.endpoint) as back:
        resumed = await run_batch(config)
        sent = back.stats.requests
    out = read_jsonl(config.out)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(n)]
    failed = [o for o in out if o["error"] is not None]  # lines that used up their attempts before the pause
    assert len(failed) <= 3 and {o["error"]["code"] for o in failed} <= {"connection_error"}
    assert resumed.exit_code == (1 if failed else 0)
    assert sent <= n - answered + 8


async def test_with_the_breaker_off_an_endpoint_that_is_down_fails_every_line_fast(
        tmp_path: Path, log_lines: list[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(200)])

    async def hang_up(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        return False  # a proxy whose upstream is gone (a refused connection would stop the run)

    with RawServer(hang_up) as down:
        config = RunConfig(source, base_url=down.base_url, concurrency=8, retry=BREAKER_RETRY, outage_threshold=0)
        with anyio.fail_after(10):
            stats = await run_batch(config)
    out = read_jsonl(config.out)
    assert stats.exit_code == 1 and dict(stats.failures_by_code) == {"connection_error": 200}
    assert {o["batchrun"]["attempts"] for o in out} == {BREAKER_RETRY.max_attempts}
    assert "pausing dispatch" not in "\n".join(log_lines)


# -- hypothesis: random fault schedules and completion orders ----------------------------------

OUTCOMES = ("ok", "429", "500", "timeout", "malformed", "400")
ERROR_CODES = {"500": "server_error", "timeout": "request_timeout", "malformed": "malformed_response",
               "400": "bad_request"}


def expected_outcome(schedule: list[str], max_attempts: int) -> tuple[str, int]:
    """The final outcome the schedule implies, and the attempt it comes at (docs/running.md, "Retries": 429s do
    not use up attempts; 400 is final; the rest are retried up to ``max_attempts`` failures)."""
    failures = 0
    attempt = 0
    for attempt, outcome in enumerate([*schedule, "ok"], start=1):
        if outcome in ("ok", "400"):
            return outcome, attempt
        if outcome != "429":
            failures += 1
            if failures >= max_attempts:
                return outcome, attempt
    raise AssertionError("unreachable")


def usage_of(line: int) -> dict[str, int]:
    return {"prompt_tokens": line + 1, "completion_tokens": 2 * line + 1, "total_tokens": 3 * line + 2}


class Scripted:
    """An endpoint that plays each line's schedule, attempt by attempt, with random delays."""

    def __init__(self, schedules: list[list[str]], seed: int) -> None:
        self.schedules = schedules
        self.sent: Counter[int] = Counter()
        self._rng = random.Random(seed)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        line = int(orjson.loads(request.content)["messages"][0]["content"].split()[1])
        attempt = self.sent[line]
        self.sent[line] += 1
        schedule = self.schedules[line]
        outcome = schedule[attempt] if attempt < len(schedule) else "ok"
        for _ in range(self._rng.randrange(30)):  # completion order: scrambled, without real time
            await anyio.lowlevel.checkpoint()
        if outcome == "ok":
            return httpx.Response(200, json={"model": "gpt-4o-mini", "usage": usage_of(line), "choices": [
                {"index": 0, "message": {"role": "assistant", "content": f"answer {line}"}}]})
        if outcome == "429":
            return httpx.Response(429, json={"error": {"message": "slow down", "code": "rate_limit_exceeded"}})
        if outcome == "500":
            return httpx.Response(500, json={"error": {"message": "boom", "type": "server_error", "code": None}})
        if outcome == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if outcome == "malformed":
            return httpx.Response(200, content=b"<html>502 Bad Gateway</html>")
        return httpx.Response(400, json={"error": {"message": "no", "code": "bad_request"}})



@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    schedules=st.lists(st.lists(st.sampled_from(OUTCOMES), max_size=6), min_size=1, max_size=14),
    seed=st.integers(0, 2**32 - 1),
    concurrency=st.sampled_from([1, 2, 5, 16]),
    max_attempts=st.integers(1, 4),
)
def test_any_fault_schedule_and_completion_order(tmp_path_factory: pytest.TempPathFactory,
                                                 schedules: list[list[str]], seed: int, concurrency: int,
                                                 max_attempts: int) -> None:
    folder = tmp_path_factory.mktemp("chaos")
    n = len(schedules)
    source = write_jsonl(folder / "in.jsonl", [chat_line(i) for i in range(n)])
    endpoint = Scripted(schedules, seed)
    config = RunConfig(source, base_url="http://127.0.0.1:9/v1", concurrency=concurrency,
                       window=max(concurrency, 4), outage_threshold=0,
                       retry=RetryPolicy(max_attempts=max_attempts, backoff_base=0.001, backoff_max=0.001))

    stats = run_async(lambda: run_batch(config, transport=httpx.MockTransport(endpoint), clock=FakeClock()))

    out = read_jsonl(config.out)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(n)]
    usage = Usage()
    for i, o in enumerate(out):
        outcome, attempts = expected_outcome(schedules[i], max_attempts)
        assert o["batchrun"]["attempts"] == attempts == endpoint.sent[i]  # never sent once more
        if outcome == "ok":
            assert o["error"] is None and o["response"]["body"]["choices"][0]["message"]["content"] == f"answer {i}"
            usage.add(Usage.from_dict(usage_of(i)))
        elif outcome in ("500", "400"):  # answered: the response is kept and error is null
            assert o["error"] is None and o["response"]["status_code"] == int(outcome), (schedules[i], o)
            assert o["batchrun"]["error"]["code"] == ERROR_CODES[outcome], (schedules[i], o)
        else:
            assert o["error"]["code"] == ERROR_CODES[outcome], (schedules[i], o)
    assert stats.succeeded == sum(succeeded(o) for o in out)
    assert stats.retries == sum(o["batchrun"]["attempts"] - 1 for o in out)
    assert stats.rate_limited == sum(s[: a].count("429") for s, (_, a) in
                                     zip(schedules, (expected_outcome(s, max_attempts) for s in schedules), strict=False))
    assert stats.report.usage() == usage == report_file(config.out).usage()
    assert stats.exit_code == (0 if stats.failed == 0 else 1)
    assert [e["custom_id"] for e in read_jsonl(config.errors_path)] == [
        o["custom_id"] for o in out if not succeeded(o)]
