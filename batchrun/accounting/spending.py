"""The spending cap in the run: `Budget`'s arithmetic, made to wait and wake in the event loop.

The reader asks `reserve` before each request goes to the workers; a worker calls `settle`
when the request is done, which may let a waiting reservation through.
"""

from __future__ import annotations

import anyio

from ..records import Job, Result
from .budget import Budget, Verdict


class BudgetGate:
    """:param budget: the cap and what is already spent (lines of earlier starts included)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._settled = anyio.Event()
        self._reserved: dict[int, float] = {}  # by line index, while in flight
        if budget.pool is not None:  # a shared cap: more may come from the other processes' share
            budget.pool.wake = self._wake

    async def reserve(self, job: Job) -> str | None:
        """Reserve the job's worst case; ``None`` when it may go, else why the run must stop."""
        worst = self.budget.worst_case(job)
        while True:
            verdict = self.budget.admit(worst)
            if verdict is Verdict.GO:
                self._reserved[job.index] = worst
                return None
            if verdict is Verdict.STOP:
                return self.budget.describe_stop(worst)
            settled = self._settled
            await settled.wait()

    def settle(self, job: Job, result: Result) -> float:
        """The job is done: its reservation becomes its cost; returns the reservation (its worst case)."""
        worst = self._reserved.pop(job.index)
        self.budget.settle(worst, result)
        self._wake()
        return worst

    def reservation(self, job: Job) -> float | None:
        """The worst case reserved for a job not settled yet."""
        return self._reserved.get(job.index)

    def release(self, job: Job) -> None:
        """The job was not sent after all."""
        self.budget.release(self._reserved.pop(job.index))
        self._wake()

    def _wake(self) -> None:
        self._settled.set()
        self._settled = anyio.Event()
