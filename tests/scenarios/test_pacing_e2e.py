"""Pacing end to end, one loopback run per provider behaviour, with small numbers.

Each test fails when the mechanism it names is switched off: shedding paced as a quota would
leave the run paced; a quota without headers not paced would retry into it every second; a
first burst's refused tail not watched would be paced only once a period of refusals ends; a
quota whose announced capacity is not used would make every line after the first wait; a token
quota charged by usage would be over-admitted.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest

from batchrun import RunConfig, run_batch, run_batch_sync
from batchrun.pacing.acceptance import FREE, QUOTA
from batchrun.simulator import Faults, SimulatorConfig, run_in_thread, serve
from batchrun.simulator.limits import RateLimits

from ..helpers import OnWritten, chat_line, read_jsonl, write_jsonl


def lines(tmp_path: Path, n: int, **body: object) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_completion_tokens=20, **body) for i in range(n)])


async def test_random_shedding_is_retried_per_request_and_never_paced(tmp_path: Path) -> None:
    faults = Faults(rate_429=0.3, retry_after_s=0.05)
    async with serve(SimulatorConfig(latency_ms=10, faults=faults, seed=3)) as sim:
        stats = await run_batch(RunConfig(lines(tmp_path, 4000), base_url=sim.base_url, concurrency=16))
        shed = sim.stats.shed
    assert stats.exit_code == 0 and stats.succeeded == 4000
    assert stats.pacer is not None and shed > 1000
    acceptance = stats.pacer.acceptance
    assert acceptance.state == FREE and acceptance.pace is None  # never paced ...
    assert acceptance.noise == 0  # ... not even for a test: most requests were accepted


async def test_a_quota_without_headers_is_found_and_paced(tmp_path: Path) -> None:
    limits = RateLimits(rpm=1200, headers=False)  # 1,200 at once, then 20 per second; only 429 + Retry-After
    async with serve(SimulatorConfig(latency_ms=2, limits=limits)) as sim:
        stats = await run_batch(RunConfig(lines(tmp_path, 1400), base_url=sim.base_url, concurrency=16))
        refused, received = sim.stats.rate_limited["requests"], sim.stats.requests
    assert stats.exit_code == 0 and stats.succeeded == 1400
    assert stats.pacer is not None and stats.pacer.acceptance.state == QUOTA
    # The in-flight requests meet the empty bucket once; unpaced, every waiting line would
    # retry into it each second (about 500 refusals here).
    assert refused <= 0.1 * received


async def test_a_per_second_quota_without_headers_is_measured_between_its_429s(tmp_path: Path) -> None:
    # 100 per second, a burst of 100, only 429s + Retry-After: what it admitted between its 429s
    # gives its rate, whatever the pace was then.
    limits = RateLimits(rpm=6000, headers=False, bucket_s=1)
    async with serve(SimulatorConfig(latency_ms=2, limits=limits)) as sim:
        stats = await run_batch(RunConfig(lines(tmp_path, 700), base_url=sim.base_url, concurrency=16))
        refused, received = sim.stats.rate_limited["requests"], sim.stats.requests
    assert stats.exit_code == 0 and stats.succeeded == 700
    assert stats.pacer is not None
    acceptance = stats.pacer.acceptance
    assert acceptance.state == QUOTA and acceptance.measured is not None
    assert 90 <= acceptance.measured <= 110
    assert refused <= 0.2 * received  # in flight when it ran dry, and the test that found it


async def test_a_full_bucket_emptied_by_the_first_burst_is_paced_from_its_tail(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # 50 per second, a bucket of 50, no headers: the first 64 requests leave long before the first
    # answer (200 ms), and the last of them are refused. That tail, not a period of refusals,
    # starts the pacing, at most at the 50 admitted over a second and the burst's length; and
    # the first answers' slots wait for it (Pacer), rather than send 36 more into the empty
    # bucket.
    caplog.set_level(logging.DEBUG, "batchrun")
    limits = RateLimits(rpm=3000, headers=False, bucket_s=1)
    async with serve(SimulatorConfig(latency_ms=200, limits=limits)) as sim:
        stats = await run_batch(RunConfig(lines(tmp_path, 100), base_url=sim.base_url, concurrency=64))
        refused = sim.stats.rate_limited["requests"]
    assert stats.exit_code == 0 and stats.succeeded == 100
    found = re.search(r"first burst's last requests were refused after (\d+) admitted: .* at most ([\d.]+)/s",
                      caplog.text)
    assert found is not None
    admitted, ceiling = int(found[1]), float(found[2])
    # At most the rate: the refill while the burst was sent is counted over a second and its length.
    assert 50 <= admitted < 64 and 25 < ceiling <= 51
    assert refused <= 20  # the burst's 14, and hardly any after it (without the wait about 40)


async def test_an_announced_quota_is_used_at_once_then_at_its_refill(tmp_path: Path) -> None:
    async with serve(SimulatorConfig(latency_ms=2, limits=RateLimits(rpm=1200))) as sim:
        stats = await run_batch(RunConfig(lines(tmp_path, 1300), base_url=sim.base_url, concurrency=16))
        refused = sim.stats.rate_limited["requests"]
    assert stats.exit_code == 0 and stats.succeeded == 1300
    assert refused <= 13  # under 1%
    assert stats.pacer is not None and stats.pacer.limits() == {"requests": 1200}
    waited = [line for line in read_jsonl(tmp_path / "in.results.jsonl") if line["batchrun"].get("waited_ms")]
    assert len(waited) <= 200  # the 1,200 the server said it had went at once; only the rest waited


async def test_a_token_quota_charged_at_admission_is_not_over_admitted(tmp_path: Path) -> None:
    # Prompt + output cap (500) charged at arrival, never refunded, though answers use ~25 tokens:
    # a client that charges what answers used admits several times too many (67 of 217 refused).
    limits = RateLimits(tpm=60_000, token_charge="sum")
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_completion_tokens=500) for i in range(150)])
    async with serve(SimulatorConfig(latency_ms=2, limits=limits)) as sim:
        stats = await run_batch(RunConfig(source, base_url=sim.base_url, concurrency=16))
        refused, received = sim.stats.rate_limited["tokens"], sim.stats.requests
    assert stats.exit_code == 0 and stats.succeeded == 150
    assert refused <= 2 and received <= 152


async def test_limits_are_learned_from_headers(tmp_path: Path) -> None:
    async with serve(SimulatorConfig(latency_ms=5, limits=RateLimits(rpm=6000, tpm=1_000_000))) as sim:
        stats = await run_batch(RunConfig(lines(tmp_path, 120), base_url=sim.base_url, concurrency=16))
        assert sim.stats.rate_limited == {"requests": 0, "tokens": 0}
    assert stats.exit_code == 0 and stats.succeeded == 120
    assert stats.pacer is not None and stats.pacer.limits() == {"requests": 6000, "tokens": 1_000_000}


def test_a_limit_lowered_mid_run_is_followed(tmp_path: Path) -> None:
    source = lines(tmp_path, 100)
    with run_in_thread(SimulatorConfig(latency_ms=5, limits=RateLimits(rpm=6000))) as sim:
        control = sim.base_url.removesuffix("/v1") + "/_simulator/limits"

        def lower() -> None:
            # The provider cuts the limit to 10 requests per second, its budget clamped to it.
            httpx.post(control, json={"rpm": 600})

        stats = run_batch_sync(RunConfig(source, base_url=sim.base_url, concurrency=16), observer=OnWritten(40, lower))
        limited = sim.stats.rate_limited["requests"]
    assert stats.exit_code == 0 and stats.succeeded == 100
    assert stats.pacer is not None and stats.pacer.limits()["requests"] == 600
    assert limited <= 16  # at most what was already in flight when the cut came
    assert [o["custom_id"] for o in read_jsonl(tmp_path / "in.results.jsonl")] == [f"req-{i}" for i in range(100)]
