"""Where a sharded run's time goes besides its shards' requests: Ray's start and stop, the split,
each shard's start and its parts' (`slots`), the merge. The driver logs them in one line at ``-v`` (`Phases.line`), which
``scripts/bench_scale.py`` reads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PREFIX = "phases: "  # how the line starts, for whoever reads it back


@dataclass(frozen=True)
class PartTimes:
    """A part's task, in seconds after the first part was submitted: when it began to run and
    when it ended; and how long its run took (the engine's, within the task)."""

    slot: int
    began: float
    ended: float
    ran: float


class Phases:
    """Seconds per phase, in the order they ended; and the times of each part that ran."""

    def __init__(self) -> None:
        self.took: dict[str, float] = {}
        self.beside: dict[str, str] = {}  # a phase run at the same time as another: that one
        self.parts: list[PartTimes] = []

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
        after 1.10, 1.22 s; ran 15.90, 16.00 s; ended after 17.05, 17.10 s; parts 4, 4; 0.06 s a
        part besides its run), …``: seconds, two decimals; per shard (slot), when its first part
        began, its parts' runs added up, when its last ended, and how many it ran; and a slot's
        time from its first part's start to its last one's end less their runs, a part.
        """
        cells = []
        for name, seconds in self.took.items():
            cell = f"{name} {seconds:.2f} s"
            if name in self.beside:
                cell += f" (beside {self.beside[name]})"
            if name == "shards" and self.parts:
                cell += f" ({self._slots()})"
            cells.append(cell)
        return PREFIX + ", ".join(cells)

    def _slots(self) -> str:
        slots: dict[int, list[PartTimes]] = {}
        for part in sorted(self.parts, key=lambda part: part.began):
            slots.setdefault(part.slot, []).append(part)
        rows = [slots[slot] for slot in sorted(slots)]
        besides = sum(parts[-1].ended - parts[0].began - sum(p.ran for p in parts) for parts in rows)
        return "; ".join([
            "started after " + ", ".join(f"{parts[0].began:.2f}" for parts in rows) + " s",
            "ran " + ", ".join(f"{sum(p.ran for p in parts):.2f}" for parts in rows) + " s",
            "ended after " + ", ".join(f"{max(p.ended for p in parts):.2f}" for parts in rows) + " s",
            "parts " + ", ".join(str(len(parts)) for parts in rows),
            f"{besides / len(self.parts):.2f} s a part besides its run"])
