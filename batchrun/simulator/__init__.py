"""The built-in OpenAI-compatible simulator (``batchrun mock-server``, ``--mock``).

``answers`` computes deterministic replies, ``faults`` decides which requests to mistreat,
``limits`` enforces OpenAI-style requests- and tokens-per-minute limits (off by default),
``batches`` serves the Batch API (``/v1/files``, ``/v1/batches``) on the server's clock,
``server`` speaks HTTP/1.1 on loopback inside a running loop, and ``runners`` gives it a loop
of its own (a thread, or the foreground)::

    async with serve(SimulatorConfig(latency_ms=50, faults=Faults(rate_429=0.1))) as sim:
        ...  # point a client at sim.base_url; read sim.stats

    async with serve(SimulatorConfig(limits=RateLimits(rpm=600, tpm=100_000))) as sim:
        ...  # 429s past the limits, x-ratelimit-* headers; POST /_simulator/limits changes them

    RateLimits(rpm=600, headers=False, token_charge="max")  # a provider that publishes nothing
    Faults(rate_429=0.05, retry_after_ms=False)  # random shedding, Retry-After in whole seconds
    Batches(seconds_per_request=0.01, rate_lost=0.01)  # the Batch API (/v1/files, /v1/batches)
"""

from __future__ import annotations

from .answers import Reply, answer
from .batches import BATCH_ENDPOINTS, Batches
from .faults import Faults
from .limits import (
    KEEP,
    LIMITS_PATH,
    LimitChange,
    RateLimits,
    TokenCharge,
    format_duration,
    parse_schedule,
)
from .runners import run_forever, run_in_thread
from .server import STATS_PATH, Simulator, SimulatorConfig, SimulatorStats, serve
from .tiers import FlexTier

__all__ = [
    "BATCH_ENDPOINTS",
    "KEEP",
    "LIMITS_PATH",
    "STATS_PATH",
    "Batches",
    "Faults",
    "FlexTier",
    "LimitChange",
    "RateLimits",
    "Reply",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "TokenCharge",
    "answer",
    "format_duration",
    "parse_schedule",
    "run_forever",
    "run_in_thread",
    "serve",
]
