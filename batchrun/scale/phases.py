"""Where a sharded run's time goes besides its shards' requests: Ray's start and stop, the split,
each shard's start, the merge. The driver logs them in one line at ``-v`` (`Phases.line`), which
``scripts/bench_scale.py`` reads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

PREFIX = "phases: "  # how the line starts, for whoever reads it back


class Phases:
    """Seconds per phase, in the order they ended; and per shard, how long after its task was
    submitted it started running and how long its run took."""

    def __init__(self) -> None:
        self.took: dict[str, float] = {}
        self.beside: dict[str, str] = {}  # a phase run at the same time as another: that one
        self.shards: list[tuple[float, float]] = []

    @contextmanager
    def timed(self, name: str, beside: str | None = None) -> Iterator[None]:
        """Time ``name``; ``beside``: the phase it runs at the same time as (in another thread)."""
        began = time.monotonic()
        if beside is not None:
            self.beside[name] = beside
        try:
            yield
        finally:
            self.took[name] = time.monotonic() - began

    def line(self) -> str:
        """``phases: split 0.45 s (beside ray start), ray start 3.05 s, …, shards 17.20 s (started
        after 1.10, 1.22 s; ran 15.90, 16.00 s), …``: seconds, two decimals."""
        cells = []
        for name, seconds in self.took.items():
            cell = f"{name} {seconds:.2f} s"
            if name in self.beside:
                cell += f" (beside {self.beside[name]})"
            if name == "shards" and self.shards:
                after = ", ".join(f"{started:.2f}" for started, _ in self.shards)
                ran = ", ".join(f"{run:.2f}" for _, run in self.shards)
                cell += f" (started after {after} s; ran {ran} s)"
            cells.append(cell)
        return PREFIX + ", ".join(cells)
