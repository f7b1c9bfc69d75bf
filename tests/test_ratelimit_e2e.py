"""Learning and following a provider's rate limits, against the rate-limited simulator."""

from __future__ import annotations

from pathlib import Path

import httpx

from batchrun import RunConfig, run_batch, run_batch_sync
from batchrun.simulator import SimulatorConfig, run_in_thread, serve
from batchrun.simulator.limits import RateLimits

from .helpers import OnWritten, chat_line, read_jsonl, write_jsonl


async def test_limits_are_learned_from_headers(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_completion_tokens=20) for i in range(120)])
    async with serve(SimulatorConfig(latency_ms=5, limits=RateLimits(rpm=6000, tpm=1_000_000))) as sim:
        stats = await run_batch(RunConfig(source, base_url=sim.base_url, concurrency=16))
        assert sim.stats.rate_limited == {"requests": 0, "tokens": 0}
    assert stats.exit_code == 0 and stats.succeeded == 120
    assert stats.throttle is not None and stats.throttle.limits() == {"requests": 6000, "tokens": 1_000_000}


def test_a_limit_lowered_mid_run_is_followed(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_completion_tokens=20) for i in range(100)])
    with run_in_thread(SimulatorConfig(latency_ms=5, limits=RateLimits(rpm=6000))) as sim:
        control = sim.base_url.removesuffix("/v1") + "/_simulator/limits"

        def lower() -> None:
            # The provider cuts the limit to 10 requests per second, its budget clamped to it.
            httpx.post(control, json={"rpm": 600})

        stats = run_batch_sync(RunConfig(source, base_url=sim.base_url, concurrency=16), observer=OnWritten(40, lower))
        limited = sim.stats.rate_limited["requests"]
    assert stats.exit_code == 0 and stats.succeeded == 100
    assert stats.throttle is not None and stats.throttle.limits()["requests"] == 600
    assert limited <= 16  # at most what was already in flight when the cut came
    assert [o["custom_id"] for o in read_jsonl(tmp_path / "in.results.jsonl")] == [f"req-{i}" for i in range(100)]
