"""The one actor of a sharded run on Ray: its rate budget and cap, and its progress board.

Both are bookkeeping a few calls a second, so one worker process holds them: a second actor
would cost a second process, whose start (a Python with Ray and batchrun imported, over a CPU
second) competes with the shards' own on a small machine.
"""

from __future__ import annotations

from typing import Any

from .budget import BudgetServer
from .progress import Post, ProgressBoard


class RunDesk(BudgetServer):
    """A `BudgetServer` (``budget`` its arguments) that also keeps the shards' posts, as a
    `ProgressBoard` does."""

    def __init__(self, **budget: Any) -> None:
        super().__init__(**budget)
        self._board = ProgressBoard()

    def post(self, shard: int, post: Post) -> None:
        self._board.post(shard, post)

    def read(self) -> dict[int, Post]:
        return self._board.read()
