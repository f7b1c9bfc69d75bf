"""A sharded run in this process, one shard after another: what the tests run, and the way to
resume or assemble a sharded run where Ray is not installed."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import anyio

from ..config import RunConfig
from ..engine import run_batch
from ..stats import RunStats
from .parts import assemble, finished, finished_cost, part_config, plan


async def run_sharded(config: RunConfig, count: int, **options: Any) -> RunStats:
    """Run ``config`` as ``count`` shards (`parts.plan`), each a `run_batch` with ``options``,
    then `parts.assemble` them.

    A finished output (`parts.finished`) is a single run's to judge: up to date, or refused.
    ``--max-cost`` is one cap: each shard may spend what the shards before it left.

    :returns: the whole run's stats; a shard that stopped (interrupted, the budget, the endpoint)
        ends the run with its stats, whose exit code is the one a single run would give, and the
        next start resumes it.
    """
    if await anyio.to_thread.run_sync(finished, config):
        return await run_batch(config, **options)
    started = time.monotonic()
    made = await anyio.to_thread.run_sync(plan, config, count)
    sent = tokens = 0
    spent = 0.0
    for shard in made.shards:
        part = part_config(config, shard, made.run_id)
        if config.max_cost is not None:  # nothing left: a cap no request fits under stops the shard as the cap does
            part = replace(part, max_cost=max(config.max_cost - spent, 1e-9))
        stats = await run_batch(part, **options)
        if stats.stop_reason is not None:
            return stats
        sent, tokens = sent + stats.sent_this_start, tokens + stats.tokens_this_start
        spent += _spent(part, stats)
    return await anyio.to_thread.run_sync(lambda: assemble(config, made, wall_s=time.monotonic() - started,
                                                           sent=sent, tokens=tokens))


def _spent(part: RunConfig, stats: RunStats) -> float:
    """USD a finished shard's lines cost: as its run counted them, or as its report says when an
    earlier start had finished it (its stats then count only lines and outcomes)."""
    if stats.up_to_date:  # its report described a complete run: it has a cost
        return finished_cost(part) or 0.0
    return stats.report.cost()[1]
