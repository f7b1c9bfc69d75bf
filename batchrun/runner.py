"""Running async code from synchronous code, on the event loop batchrun is tuned for."""

from __future__ import annotations

from typing import Any

import anyio


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
