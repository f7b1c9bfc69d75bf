"""`BodyBudget`: bodies being read share one byte budget; past it, all but the largest wait."""

from __future__ import annotations

import anyio
import pytest

from batchrun.bodies import BodyBudget, collect
from batchrun.errors import InvalidResponse


async def test_past_the_budget_a_smaller_body_waits_and_the_largest_goes_on() -> None:
    budget = BodyBudget(limit=100)
    large, small = budget.holding(), budget.holding()
    await large.take(60)
    await small.take(30)
    took = anyio.Event()

    async def small_takes_more() -> None:
        await small.take(20)
        took.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(small_takes_more)
        await anyio.wait_all_tasks_blocked()
        assert not took.is_set() and budget.used == 90  # 110 would be past the budget
        await large.take(50)  # the largest holder is never held back
        assert budget.used == 140
        await anyio.wait_all_tasks_blocked()
        assert not took.is_set()
        large.give_back()
        await took.wait()
    assert budget.used == 50 and budget.peak == 140
    small.give_back()
    assert budget.used == 0


def test_a_body_that_fits_takes_its_bytes_at_once_and_one_that_does_not_takes_none() -> None:
    budget = BodyBudget(limit=100)
    first, second = budget.holding(), budget.holding()
    assert first.take_now(70) and budget.used == 70
    assert not second.take_now(40) and budget.used == 70 and second.size == 0  # it must wait: `take`
    assert second.take_now(30) and budget.used == budget.peak == 100


async def test_a_body_past_its_cap_gives_up_and_gives_its_bytes_back() -> None:
    budget = BodyBudget(limit=10**6)
    holding = budget.holding()

    async def chunks():  # type: ignore[no-untyped-def]
        while True:
            yield b"x" * 1000

    with pytest.raises(InvalidResponse, match="over 5,000 bytes"):
        try:
            await collect(chunks(), holding, cap=5000, status=200)
        finally:
            holding.give_back()
    assert budget.used == 0 and budget.peak == 5000
