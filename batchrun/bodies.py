"""Response bodies as they arrive: each under its own size cap, all of them under one budget.

Each body is capped on its own, but 64 requests in flight whose bodies all stream up to a 64 MiB
cap would hold 4 GiB together. `BodyBudget` bounds the bytes held by every body being read: past
it, a body waits for room before it takes its next chunk (its socket is not read meanwhile, so
the server is held back as well) — except the body holding the most, which always goes on. That
one ends at its own cap, its deadline or its last byte and gives its bytes back, so reading never
deadlocks and the total stays within the budget plus one cap.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

import anyio

from .errors import InvalidResponse

DEFAULT_MAX_RESPONSE_BYTES = 64 * 2**20
DEFAULT_BODY_BUDGET = 4 * DEFAULT_MAX_RESPONSE_BYTES


class BodyBudget:
    """The bytes that all bodies being read may hold together.

    :param limit: bytes; a body that would go past it waits, unless it holds the most.
    """

    def __init__(self, limit: int = DEFAULT_BODY_BUDGET) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._holders: set[Holding] = set()
        # Swapped rather than an anyio.Condition: giving back happens in a `finally` under a
        # cancelled deadline, where acquiring a condition's lock would raise.
        self._room: anyio.Event | None = None

    def holding(self) -> Holding:
        holding = Holding(self)
        self._holders.add(holding)
        return holding

    async def _take(self, holding: Holding, size: int) -> None:
        while not self._fits(size) and holding.size < max(h.size for h in self._holders):
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()
        self._grant(holding, size)

    def _fits(self, size: int) -> bool:
        return self.used + size <= self.limit

    def _grant(self, holding: Holding, size: int) -> None:
        holding.size += size
        self.used += size
        self.peak = max(self.peak, self.used)

    def _give_back(self, holding: Holding) -> None:
        self._holders.discard(holding)
        self.used -= holding.size
        holding.size = 0
        if self._room is not None:
            self._room.set()
            self._room = None


class Holding:
    """One body's share of a `BodyBudget`; given back when the body is read or abandoned."""

    __slots__ = ("_budget", "size")

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.size = 0

    async def take(self, size: int) -> None:
        await self._budget._take(self, size)

    def take_now(self, size: int) -> bool:
        """Take ``size`` bytes if they fit in the budget now, without waiting; whether it did."""
        if not self._budget._fits(size):
            return False
        self._budget._grant(self, size)
        return True

    def give_back(self) -> None:
        self._budget._give_back(self)


async def collect(chunks: AsyncIterable[bytes], holding: Holding, cap: int, status: int) -> bytes:
    """The body ``chunks`` make up, counted as it arrives (after any decompression, so a small
    body cannot inflate into gigabytes).

    :raises InvalidResponse: it grew past ``cap``.
    """
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise too_large(status, f"over {cap:,} bytes")
        await holding.take(len(chunk))
        parts.append(chunk)
    return b"".join(parts)


def too_large(status: int, how: str) -> InvalidResponse:
    return InvalidResponse("response_too_large", f"HTTP {status} with a body too large to keep ({how})",
                           status_code=status)
