"""The budget gate in the event loop alone: a reservation goes, waits for a settle, or stops;
settling and releasing give room back and wake whoever waits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import orjson

from batchrun.accounting.budget import Budget
from batchrun.accounting.pricing import Price, PriceTable
from batchrun.accounting.spending import BudgetGate
from batchrun.records import Job, Result

PRICES = PriceTable({"m": Price(input=1.0, output=2.0)})


def job(index: int, max_tokens: int = 100_000) -> Job:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    return Job(index, index + 1, f"req-{index}", "/v1/chat/completions", orjson.dumps(body), "m")


def refused(index: int) -> Result:
    """An HTTP error without usage: it costs nothing."""
    return Result(index, f"req-{index}", 400, None, {"error": {}}, {"code": "invalid_value"})


def gate(fits: float) -> tuple[BudgetGate, float]:
    """A gate whose cap holds ``fits`` worst cases of `job` (each ~$0.2)."""
    worst = Budget(1.0, PRICES, ["m"]).worst_case(job(0))
    return BudgetGate(Budget(worst * fits, PRICES, ["m"])), worst


@contextlib.asynccontextmanager
async def second_waiting(budget_gate: BudgetGate) -> AsyncIterator[list[str | None]]:
    """Job 0 reserved, and job 1's reservation waiting behind it: the block runs while it waits,
    and job 1's verdict is in the list once the block and the wait are over."""
    assert await budget_gate.reserve(job(0)) is None
    verdicts: list[str | None] = []

    async def second() -> None:
        verdicts.append(await budget_gate.reserve(job(1)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        yield verdicts


async def test_a_job_that_fits_is_reserved_at_its_worst_case() -> None:
    budget_gate, worst = gate(2.5)
    assert await budget_gate.reserve(job(0)) is None
    assert budget_gate.reservation(job(0)) == worst
    assert budget_gate.reservation(job(1)) is None
    assert budget_gate.budget.in_flight == 1


async def test_a_job_that_cannot_fit_even_with_nothing_in_flight_stops_with_the_budgets_reason() -> None:
    budget_gate, _ = gate(0.5)
    reason = await budget_gate.reserve(job(0))
    assert reason is not None and reason.startswith("budget reached (--max-cost)")
    assert budget_gate.reservation(job(0)) is None


async def test_a_job_that_fits_once_another_settles_waits_for_the_settle() -> None:
    budget_gate, worst = gate(1.5)
    async with second_waiting(budget_gate) as verdicts:
        assert verdicts == []  # waiting: it fits only once the first is off the budget
        assert budget_gate.settle(job(0), refused(0)) == worst  # the reservation, returned
    assert verdicts == [None]
    assert budget_gate.reservation(job(1)) == worst
    assert budget_gate.budget.spent == 0.0  # the refusal cost nothing


async def test_a_job_not_sent_after_all_gives_its_reservation_back_and_wakes_a_waiter() -> None:
    budget_gate, _ = gate(1.5)
    async with second_waiting(budget_gate) as verdicts:
        budget_gate.release(job(0))
    assert verdicts == [None]
    assert budget_gate.reservation(job(0)) is None and budget_gate.budget.in_flight == 1


async def test_a_waiter_that_no_longer_fits_after_a_costly_settle_stops() -> None:
    budget_gate, worst = gate(1.5)
    async with second_waiting(budget_gate) as verdicts:
        lost = Result(0, "req-0", None, None, None, {"code": "timeout"})  # no answer: charged its reservation
        budget_gate.settle(job(0), lost)
    assert budget_gate.budget.spent == worst
    assert len(verdicts) == 1 and verdicts[0] is not None and verdicts[0].startswith("budget reached")
