"""End to end over real loopback HTTP: the engine and its default transport against the simulator."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import anyio
import orjson
import pytest

from batchrun import ApiKey, RetryPolicy, RunConfig, run_batch
from batchrun.simulator import Faults, SimulatorConfig, serve

from ..helpers import chat_line, files_under, read_jsonl, succeeded, write_jsonl
from ..rawserver import RawServer, Seen

FAST_RETRIES = RetryPolicy(max_attempts=12, backoff_base=0.01, backoff_max=0.05)


def mixed_rows(n: int, every_bad: int = 25) -> list[dict[str, object]]:
    """Chat lines, every ``every_bad``-th one with empty messages (the simulator answers 400)."""
    rows = [chat_line(i) for i in range(n)]
    for i in range(0, n, every_bad):
        rows[i]["body"]["messages"] = []  # type: ignore[index]
    return rows


async def test_faulty_endpoint_every_line_answered_in_order(tmp_path: Path) -> None:
    rows = mixed_rows(300)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    faults = Faults(rate_429=0.1, rate_500=0.08, rate_timeout=0.03, rate_drop=0.03, rate_truncate=0.03,
                    rate_malformed=0.03, retry_after_s=0.02, hang_s=5)
    async with serve(SimulatorConfig(faults=faults, seed=11, jitter_ms=3)) as sim:
        config = RunConfig(source, base_url=sim.base_url, concurrency=32, timeout=0.5, retry=FAST_RETRIES)
        with anyio.fail_after(60):
            stats = await run_batch(config)
        requests_seen = sim.stats.requests
        answered_400 = sim.stats.responses.get(400)

    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert [o["custom_id"] for o in out] == [r["custom_id"] for r in rows]
    bad = {f"req-{i}" for i in range(0, 300, 25)}
    for o in out:
        if o["custom_id"] in bad:
            assert o["response"]["status_code"] == 400 and o["error"] is None  # the response stands for itself
            assert o["response"]["body"]["error"]["code"] == o["batchrun"]["error"]["code"] == "empty_array"
        else:
            assert o["error"] is None and o["response"]["status_code"] == 200
            assert o["response"]["body"]["choices"][0]["message"]["content"]
            assert o["response"]["request_id"].startswith("req_")
    assert answered_400 == len(bad)  # each 400 was the last attempt of its line: never resent
    errors = read_jsonl(tmp_path / "in.results.errors.jsonl")
    assert [e["custom_id"] for e in errors] == [o["custom_id"] for o in out if o["custom_id"] in bad]
    assert stats.exit_code == 1 and stats.succeeded == 288 and stats.failed == 12
    assert stats.retries > 0 and stats.rate_limited > 0
    attempts = sum(o["batchrun"]["attempts"] for o in out)
    assert attempts == 300 + stats.retries
    assert requests_seen <= attempts  # drops and hangs that never completed a request aren't counted
    assert stats.report.usage().total == sum(o["response"]["body"]["usage"]["total_tokens"]
                                              for o in out if succeeded(o))


async def test_answers_match_an_unfaulted_run(tmp_path: Path) -> None:
    """Faults change attempts, never answers: the simulator is deterministic per request."""
    rows = [chat_line(i) for i in range(120)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    bodies = []
    for faults in (Faults(), Faults(rate_429=0.2, rate_500=0.2, rate_drop=0.1, retry_after_s=0.01)):
        out_path = tmp_path / f"out-{len(bodies)}.jsonl"
        async with serve(SimulatorConfig(faults=faults, seed=3)) as sim:
            config = RunConfig(source, out_path, base_url=sim.base_url, concurrency=16, retry=FAST_RETRIES)
            stats = await run_batch(config)
        assert stats.exit_code == 0
        bodies.append([o["response"]["body"] for o in read_jsonl(out_path)])
    assert bodies[0] == bodies[1]


async def test_exhausted_retries_are_recorded_with_exact_attempts(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(20)])
    async with serve(SimulatorConfig(faults=Faults(rate_500=1.0))) as sim:
        policy = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.001)
        config = RunConfig(source, base_url=sim.base_url, concurrency=4, retry=policy, outage_threshold=0)
        stats = await run_batch(config)
        assert sim.stats.requests == 60
    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert all(o["batchrun"]["attempts"] == 3 for o in out)
    assert {o["response"]["status_code"] for o in out} <= {500, 502, 503, 504}
    assert stats.exit_code == 1 and stats.failed == 20 and stats.retries == 40


async def test_wrong_key_aborts_within_a_handful_of_requests(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(500)])
    async with serve(SimulatorConfig(faults=Faults(require_api_key="sk-right"))) as sim:
        config = RunConfig(source, base_url=sim.base_url, api_key=ApiKey("sk-wrong-key"), concurrency=8)
        stats = await run_batch(config)
        assert sim.stats.requests <= 8
    assert stats.exit_code == 4 and "401" in (stats.stop_reason or "")
    assert not (tmp_path / "in.results.jsonl").exists()
    for path in files_under(tmp_path):
        assert b"sk-wrong-key" not in path.read_bytes()


async def test_right_key_is_sent(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(10)])
    async with serve(SimulatorConfig(faults=Faults(require_api_key="sk-right"))) as sim:
        stats = await run_batch(RunConfig(source, base_url=sim.base_url, api_key=ApiKey("sk-right")))
    assert stats.exit_code == 0 and stats.succeeded == 10


async def test_unreachable_endpoint_gives_connection_errors(tmp_path: Path) -> None:
    """An endpoint that hangs up on every request (a refused connection, before any answer, stops
    the run instead: `tests/test_fast_fail.py`)."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    policy = RetryPolicy(max_attempts=2, backoff_base=0.001, backoff_max=0.001)

    async def hang_up(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        return False

    with RawServer(hang_up) as down:
        config = RunConfig(source, base_url=down.base_url, retry=policy, outage_threshold=0)
        stats = await run_batch(config)
    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert [o["error"]["code"] for o in out] == ["connection_error"] * 5
    assert all(o["response"] is None and o["batchrun"]["attempts"] == 2 for o in out)
    assert stats.exit_code == 1


async def test_every_endpoint_path_and_usage_shape(tmp_path: Path) -> None:
    rows = [
        {"custom_id": "chat", "url": "/v1/chat/completions",
         "body": {"model": "o4-mini", "messages": [{"role": "user", "content": "x" * 6000}]}},
        {"custom_id": "emb", "url": "/v1/embeddings", "body": {"model": "text-embedding-3-small", "input": "hi"}},
        {"custom_id": "resp", "url": "/v1/responses", "body": {"model": "gpt-4.1-mini", "input": "hello"}},
        {"custom_id": "legacy", "url": "/v1/completions", "body": {"model": "gpt-3.5-turbo-instruct", "prompt": "a"}},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    async with serve() as sim:
        stats = await run_batch(RunConfig(source, base_url=sim.base_url))
    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert stats.exit_code == 0, [o["error"] for o in out]
    by_model = {m: t.usage for m, t in stats.report.models.items()}
    chat_usage = out[0]["response"]["body"]["usage"]
    assert by_model["o4-mini"].reasoning == chat_usage["completion_tokens_details"]["reasoning_tokens"] > 0
    assert by_model["o4-mini"].cached == chat_usage["prompt_tokens_details"]["cached_tokens"]
    assert by_model["text-embedding-3-small"].completion == 0 and by_model["text-embedding-3-small"].prompt > 0
    resp_usage = out[2]["response"]["body"]["usage"]
    assert by_model["gpt-4.1-mini"].prompt == resp_usage["input_tokens"]
    assert by_model["gpt-4.1-mini"].completion == resp_usage["output_tokens"]
    assert Counter(o["response"]["status_code"] for o in out) == {200: 4}


@pytest.mark.parametrize("base_suffix", ["/v1", "/v1/", ""])
async def test_base_url_with_or_without_v1(tmp_path: Path, base_suffix: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    async with serve() as sim:
        base = sim.base_url.removesuffix("/v1") + base_suffix
        stats = await run_batch(RunConfig(source, base_url=base))
    assert stats.exit_code == 0
    assert orjson.loads((tmp_path / "in.results.jsonl").read_bytes())["response"]["status_code"] == 200


async def test_a_429_storm_slows_the_run_instead_of_failing_lines(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(100)])
    async with serve(SimulatorConfig(faults=Faults(rate_429=0.8, retry_after_s=0.005), seed=5)) as sim:
        # Two attempts would fail most lines if 429s counted; they are bounded by patience instead.
        policy = RetryPolicy(max_attempts=2, rate_limit_patience=30)
        stats = await run_batch(RunConfig(source, base_url=sim.base_url, concurrency=16, retry=policy))
        answered_429 = sim.stats.responses[429]
    assert stats.exit_code == 0 and stats.succeeded == 100
    assert stats.rate_limited == answered_429 > 200


async def test_connections_opened_stay_near_the_concurrency(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3000)])
    async with serve(SimulatorConfig(latency_ms=2)) as sim:
        stats = await run_batch(RunConfig(source, base_url=sim.base_url, concurrency=32))
        opened = sim.stats.connections
    assert stats.succeeded == 3000
    assert 1 <= opened <= 32  # keep-alive: no connection churn
