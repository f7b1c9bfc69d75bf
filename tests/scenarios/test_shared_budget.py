"""Shards of one run in one process sharing a `BudgetServer`, against the simulator's limits.

Time is virtual (`VirtualClock`: the simulator's buckets, the pacers and the refills all read
it), so the figures are the policy's, whatever else the machine is doing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from batchrun import RunConfig, run_batch
from batchrun.scale.budget import BudgetServer, LocalBudgetClient, ShardBudget
from batchrun.simulator import SimulatorConfig, serve
from batchrun.simulator.limits import RateLimits
from batchrun.stats import RunStats

from ..helpers import VirtualClock, chat_line, write_jsonl


async def run_shards(tmp_path: Path, base_url: str, clock: VirtualClock, server: BudgetServer | None, shards: int,
                     lines: int, **config: Any) -> list[RunStats]:
    """``shards`` runs of ``lines`` lines each, at once; ``server`` None: each on its own."""
    results: list[RunStats] = []

    async def shard(number: int) -> None:
        rows = [chat_line(number * lines + i, max_completion_tokens=20) for i in range(lines)]
        tmp_path.mkdir(exist_ok=True)
        source = write_jsonl(tmp_path / f"part{number}.jsonl", rows)
        shared = None if server is None else ShardBudget(LocalBudgetClient(server), number, clock=clock)
        results.append(await run_batch(RunConfig(source, base_url=base_url, concurrency=16, **config), clock=clock,
                                       shared=shared))

    async with anyio.create_task_group() as group:
        for number in range(shards):
            group.start_soon(shard, number)
        group.start_soon(clock.drive, lambda: len(results) == shards)
    return results


@pytest.mark.parametrize(("given", "shards"), [(None, 2), (600, 3)], ids=["learned-2", "given-3"])
async def test_shards_together_keep_to_the_limit_and_use_it(tmp_path: Path, given: int | None, shards: int) -> None:
    clock = VirtualClock()
    rpm, lines = 600, 800 // shards
    async with serve(SimulatorConfig(limits=RateLimits(rpm=rpm)), clock=clock) as sim:
        start = clock.now()
        server = BudgetServer(rpm=given, now=clock)
        stats = await run_shards(tmp_path, sim.base_url, clock, server, shards, lines, rpm=given)
        elapsed = clock.now() - start
        refused, received = sim.stats.rate_limited["requests"], sim.stats.requests
    assert all(s.exit_code == 0 and s.succeeded == lines for s in stats)
    assert refused < 0.01 * received  # together within the limit
    # The most the limit allows: the provider's full bucket at the start, then rpm a minute.
    possible = rpm + elapsed * rpm / 60
    assert 0.95 * possible <= shards * lines <= possible
    assert server.limits() == {"requests": rpm}


async def test_shards_together_keep_to_a_learned_token_limit_as_one_process_does(tmp_path: Path) -> None:
    # Requests are charged at their estimate (about 45 tokens here), the provider charges them
    # some 30: the buckets follow what the provider says is left, or the limit goes two-thirds used.
    elapsed = []
    for shards in (1, 2):
        clock = VirtualClock()
        server = BudgetServer(now=clock) if shards > 1 else None
        async with serve(SimulatorConfig(limits=RateLimits(tpm=12_000)), clock=clock) as sim:
            start = clock.now()
            stats = await run_shards(tmp_path / str(shards), sim.base_url, clock, server, shards, 800 // shards)
            elapsed.append(clock.now() - start)
            refused, received = sim.stats.rate_limited["tokens"], sim.stats.requests
        assert all(s.exit_code == 0 and s.succeeded == 800 // shards for s in stats)
        assert refused < 0.01 * received  # two shards each pacing itself alone: 15%
    alone, shared = elapsed
    assert shared <= alone / 0.95
    assert server is not None and server.limits() == {"tokens": 12_000}


async def test_max_cost_is_one_cap_for_every_shard(tmp_path: Path) -> None:
    clock, cap, shards = VirtualClock(), 0.002, 2  # about 140 of the 400 lines' answers
    async with serve(SimulatorConfig(), clock=clock) as sim:
        server = BudgetServer(max_cost=cap, now=clock)
        stats = await run_shards(tmp_path, sim.base_url, clock, server, shards, 200, max_cost=cap)
    assert all(s.exit_code == 3 and "--max-cost" in (s.stop_reason or "") for s in stats)
    spent = [s.report.cost()[0] or 0.0 for s in stats]
    assert 0.9 * cap < sum(spent) <= cap
    assert server.spent() / 1e9 == pytest.approx(sum(spent), abs=1e-6)
