"""Running async code from synchronous code, on the event loop batchrun is tuned for."""

from __future__ import annotations

import gc
from typing import Any

import anyio

# Allocations between two collections of the youngest generation in a process that is batchrun's
# own. A run allocates a few dozen short-lived containers per request (futures, dicts, results),
# so at CPython's 700 that generation was collected every dozen requests: about a tenth of a run's
# CPU (`scripts/bench.py`, before and after). The older generations keep their thresholds, so
# cyclic garbage that survives is still collected within a few million allocations.
YOUNG_GENERATION = 20_000


def run_async(fn: Any, *args: Any) -> Any:
    """``anyio.run`` on asyncio (aiohttp needs it), with uvloop where it is installed: every event
    loop batchrun starts (a run, the simulator's own) is started here."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        use_uvloop = False
    else:
        use_uvloop = True
    return anyio.run(fn, *args, backend="asyncio", backend_options={"use_uvloop": use_uvloop})


def own_process() -> None:
    """Set up a process that is batchrun's own — a command's, a shard's worker — for runs: its
    young generation collected every `YOUNG_GENERATION` allocations. A program that only imports
    batchrun keeps its own settings."""
    gc.set_threshold(YOUNG_GENERATION, *gc.get_threshold()[1:])
