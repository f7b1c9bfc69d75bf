"""An httpx transport that spreads requests round-robin over several small connection pools.

httpcore's pool thrashes when many requests wait on it (a released connection is offered to
every waiter: encode/httpx#3215); pools of 8 have few waiters each. For the ``httpx-sharded``
bench client only.
"""

from __future__ import annotations

import itertools
import math

import httpx

SHARD_SIZE = 8


class ShardedTransport(httpx.AsyncBaseTransport):
    """``ceil(concurrency / 8)`` ``AsyncHTTPTransport`` shards, each holding 8 keep-alive connections."""

    def __init__(self, concurrency: int) -> None:
        limits = httpx.Limits(max_connections=SHARD_SIZE, max_keepalive_connections=SHARD_SIZE)
        count = math.ceil(concurrency / SHARD_SIZE)
        self._shards = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(count)]
        self._next = itertools.cycle(self._shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await next(self._next).handle_async_request(request)

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()
