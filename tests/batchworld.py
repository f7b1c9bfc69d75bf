"""The simulator's Batch API as ``--via batch`` tests drive it: the simulator on a clock of its
own (`SimClock`) that only the run's sleeps move on (`Linked`), so a batch is exactly as far
along at each status check on every machine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from batchrun.batchapi.lifecycle import run_via_batch
from batchrun.batchapi.options import BatchOptions
from batchrun.batchapi.pending import Pending
from batchrun.config import RunConfig
from batchrun.engine import run_batch
from batchrun.runner import run_async
from batchrun.simulator import Batches, Faults, Simulator, SimulatorConfig, run_in_thread
from batchrun.stats import RunStats

from .helpers import FakeClock, SimClock, chat_line, write_jsonl

FAST = BatchOptions(poll_interval=30.0)


class Linked(FakeClock):
    """The run's clock: sleeping takes no time, and moves the simulator's clock on as much."""

    def __init__(self, sim: SimClock) -> None:
        super().__init__()
        self.sim = sim

    async def sleep(self, seconds: float) -> None:
        self.sim.now += max(seconds, 0.0)
        await super().sleep(seconds)


@dataclass
class World:
    sim: Simulator
    clock: SimClock
    anchor: float  # wall time at the simulator clock's zero

    def wall(self) -> float:
        return self.anchor + self.clock.now

    def run(self, path: Path, out: Path, options: BatchOptions = FAST, **config: Any) -> RunStats | Pending:
        """``path`` through the Batch API into ``out``."""
        run_config = RunConfig(path, out, base_url=self.sim.base_url, **config)
        stats: RunStats | Pending = run_async(partial(run_via_batch, run_config, options, clock=Linked(self.clock),
                                                      wall=self.wall))
        return stats

    def online(self, path: Path, out: Path) -> RunStats:
        """``path`` online into ``out``, against the same simulator."""
        stats: RunStats = run_async(partial(run_batch, RunConfig(path, out, base_url=self.sim.base_url)))
        return stats


@contextmanager
def world(faults: Faults | None = None, **batches: Any) -> Iterator[World]:
    """A simulator with ``faults`` and a Batch API shaped by ``batches`` (`Batches`)."""
    clock = SimClock()
    config = SimulatorConfig(faults=faults or Faults(), batches=Batches(**batches))
    with run_in_thread(config, clock=clock) as sim:
        yield World(sim, clock, time.time() - clock.now)


def lines(tmp_path: Path, n: int, **body: Any) -> Path:
    """``in.jsonl`` of ``n`` chat lines."""
    return write_jsonl(tmp_path / "in.jsonl", [chat_line(i, **body) for i in range(n)])
