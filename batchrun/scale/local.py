"""A sharded run in this process, one shard after another: what the tests run, and the way to
resume or assemble a sharded run where Ray is not installed."""

from __future__ import annotations

import time
from typing import Any

import anyio

from ..config import RunConfig
from ..engine import run_batch
from ..pacing.clock import SYSTEM_CLOCK
from ..stats import RunStats
from .budget import BudgetServer, LocalBudgetClient, ShardBudget
from .parts import assemble, finished, part_config, plan, spent_before


async def run_sharded(config: RunConfig, count: int, **options: Any) -> RunStats:
    """Run ``config`` as ``count`` shards (`parts.plan`), each a `run_batch` with ``options``,
    then `parts.assemble` them.

    A finished output (`parts.finished`) is a single run's to judge: up to date, or refused.
    ``--max-cost`` is one cap, kept as on Ray: every shard leases from one `BudgetServer`,
    here in this process, which starts from what each part spent in earlier starts, finished
    or not.

    :returns: the whole run's stats; a shard that stopped (interrupted, the budget, the endpoint)
        ends the run with its stats, whose exit code is the one a single run would give, and the
        next start resumes it.
    """
    if await anyio.to_thread.run_sync(finished, config):
        return await run_batch(config, **options)
    started = time.monotonic()
    made = await anyio.to_thread.run_sync(plan, config, count)
    server = BudgetServer(rpm=config.rpm, tpm=config.tpm, max_cost=config.max_cost,
                          spent=await anyio.to_thread.run_sync(spent_before, config, made))
    sent = tokens = 0
    for shard in made.shards:
        shared = ShardBudget(LocalBudgetClient(server), shard.number, clock=options.get("clock", SYSTEM_CLOCK))
        stats = await run_batch(part_config(config, shard, made.run_id), shared=shared, **options)
        if stats.stop_reason is not None:
            return stats
        sent, tokens = sent + stats.sent_this_start, tokens + stats.tokens_this_start
    return await anyio.to_thread.run_sync(lambda: assemble(config, made, shards=count, wall_s=time.monotonic() - started,
                                                           sent=sent, tokens=tokens))
