"""Random 5xx against an endpoint that answers most requests, and an endpoint that is down, over
real loopback (the simulator) on a fake clock: the waits each line's retries chose are counted.

While most answers are answers, a line's 5xx is retried soon (`retry.QUICK_RETRY`), so one
unlucky line does not hold the run for tens of seconds; while nearly every answer fails, the
backoff is exponential as ever and the outage breaker opens (``docs/retries.md``).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import pytest

from batchrun import RetryPolicy, RunConfig, run_batch
from batchrun.errors import RequestError, ServerError
from batchrun.records import Job
from batchrun.simulator import Faults, SimulatorConfig, serve

from ..helpers import FakeClock, chat_line, read_jsonl, write_jsonl

POLICY = RetryPolicy(max_attempts=12, backoff_base=1.0, backoff_max=8.0)  # --max-attempts 12, the default backoff
QUICK = 0.5  # s: the short wait's cap, backoff_base × retry.QUICK_RETRY


class Waits:
    """An observer of the run that keeps the wait chosen after each line's 5xx, in order."""

    def __init__(self) -> None:
        self.by_line: dict[str, list[float]] = {}

    def started(self, stats: Any) -> None:
        pass

    def written(self, result: Any, stats: Any) -> None:
        pass

    def retrying(self, job: Job, error: RequestError, wait: float) -> None:
        if isinstance(error, ServerError):
            self.by_line.setdefault(job.custom_id, []).append(wait)

    def all(self) -> list[float]:
        return [wait for waits in self.by_line.values() for wait in waits]


@pytest.fixture
def at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every jitter draw at the top of its range: each wait a line chooses is then the cap the
    policy chose for it (the short wait's, or the backoff's doubling one)."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)


async def run(tmp_path: Path, faults: Faults, n: int, **config: Any) -> tuple[Any, Waits, int]:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(n)])
    waits = Waits()
    async with serve(SimulatorConfig(faults=faults, seed=3)) as sim:
        stats = await run_batch(RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url, concurrency=16,
                                          retry=POLICY, **config), observer=waits, clock=FakeClock())
        requests = sim.stats.requests
    return stats, waits, requests


@pytest.mark.usefixtures("at_the_cap")
async def test_random_5xx_among_successes_are_retried_soon_and_every_line_is_answered(tmp_path: Path) -> None:
    stats, waits, requests = await run(tmp_path, Faults(rate_500=0.3), 400)
    out = read_jsonl(tmp_path / "out.jsonl")
    assert stats.exit_code == 0 and all(o["error"] is None for o in out)
    chosen = waits.all()
    assert len(chosen) == requests - 400 and len(chosen) > 100  # every 5xx was retried, and waited as chosen
    # Only before the window holds enough answers to tell (the first few) may a line back off.
    assert sum(wait != QUICK for wait in chosen) <= len(chosen) // 20
    # Some line failed three times or more (a 30% chance each, 400 lines), and no line waited as
    # long as three backoffs (1 + 2 + 4 s): not even that one.
    assert max(map(len, waits.by_line.values())) >= 3
    assert max(map(sum, waits.by_line.values())) < 7.0


@pytest.mark.usefixtures("at_the_cap")
async def test_an_endpoint_answering_only_5xx_backs_off_exponentially_and_opens_the_breaker(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "batchrun")
    stats, waits, requests = await run(tmp_path, Faults(rate_500=1.0), 400, max_outage=120.0)
    assert stats.exit_code == 4 and "the endpoint has been unavailable" in (stats.stop_reason or "")
    assert "the endpoint looks down" in caplog.text and "pausing dispatch" in caplog.text
    assert requests < 100  # dispatch paused: most lines were never sent
    assert len(waits.all()) >= 16
    for line in waits.by_line.values():  # 1, 2, 4 ... s: each line's failures back off as ever
        assert line == [min(POLICY.backoff_max, POLICY.backoff_base * 2**n) for n in range(len(line))]
    assert any(len(line) >= 2 for line in waits.by_line.values())
