"""Running the async engine from synchronous code, on the event loop batchrun is tuned for."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio

from .config import RunConfig
from .engine import run_batch
from .stats import RunStats


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


def run_batch_sync(config: RunConfig, **kwargs: Any) -> RunStats:
    """`run_batch` for code that is not already async (scripts; not inside a running loop)."""
    result: RunStats = run_async(partial(run_batch, config, **kwargs))
    return result
