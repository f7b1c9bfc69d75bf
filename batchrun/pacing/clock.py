"""The one clock pacing, retries and the breaker read and sleep on, so tests can replace it.

Every wait in the request path goes through a `Clock`: a test passes a fake whose `sleep`
advances `now` at once, and the whole policy runs without sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale; only differences mean anything."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """``time.monotonic`` (a tenth of the cost of asking the event loop) and ``anyio.sleep``."""

    now = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
