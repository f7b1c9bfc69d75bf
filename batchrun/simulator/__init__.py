"""The built-in OpenAI-compatible simulator of SPEC §8 (``batchrun mock-server``, ``--mock``).

``answers`` computes deterministic replies, ``faults`` decides which requests to mistreat,
``server`` speaks HTTP/1.1 on loopback inside a running loop, and ``runners`` gives it a loop of
its own (a thread, or the foreground)::

    async with serve(SimulatorConfig(latency_ms=50, faults=Faults(rate_429=0.1))) as sim:
        ...  # point a client at sim.base_url; read sim.stats
"""

from __future__ import annotations

from .answers import Reply, answer
from .faults import Faults
from .runners import run_forever, run_in_thread
from .server import STATS_PATH, Simulator, SimulatorConfig, SimulatorStats, serve

__all__ = [
    "STATS_PATH",
    "Faults",
    "Reply",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "answer",
    "run_forever",
    "run_in_thread",
    "serve",
]
