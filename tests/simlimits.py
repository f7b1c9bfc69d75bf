"""The simulator's rate limits as its tests drive them: a chat body, the usage the simulator
will report for it, a request admitted straight to a `Limiter`, and a limited simulator over
loopback with a client on its root URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from batchrun.simulator import RateLimits, SimulatorConfig, answer, serve
from batchrun.simulator.limits import Limiter

from .helpers import SimClock

CHAT = "/v1/chat/completions"


def chat(content: str = "Hello", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


def usage_of(body: dict[str, Any], path: str = CHAT) -> dict[str, Any]:
    """What the simulator will report for ``body``: the ground truth of the token charges."""
    usage: dict[str, Any] = answer("POST", path, orjson.dumps(body)).payload["usage"]
    return usage


def admit(limiter: Limiter, body: dict[str, Any], path: str = CHAT) -> Any:
    raw = orjson.dumps(body)
    return limiter.admit(answer("POST", path, raw), raw)


@asynccontextmanager
async def limited(
    limits: RateLimits | None = None, clock: SimClock | None = None, **config: Any
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """A simulator with ``limits`` and a client on its root URL."""
    async with (
        serve(SimulatorConfig(limits=limits or RateLimits(), **config), clock=clock) as sim,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{sim.port}", timeout=5) as client,
    ):
        yield sim, client


def ratelimit_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("x-ratelimit-")}
