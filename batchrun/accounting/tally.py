"""What the report of a run and the estimate before it both keep: counters per model, and a
total over models that is unknown as soon as one model has no price."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


class PerModel(dict[str, T]):
    """Counters by model name; `of` creates a model's counters on first use (a plain lookup
    never does, so reading a model that was never counted stays an error)."""

    def __init__(self, new: Callable[[], T]) -> None:
        super().__init__()
        self._new = new

    def of(self, model: str) -> T:
        tally = self.get(model)
        if tally is None:
            tally = self[model] = self._new()
        return tally


def priced_total(costs: Iterable[float | None]) -> tuple[float | None, float]:
    """``(total, priced)`` of per-model costs: the total is ``None`` when some cost is (no price)."""
    priced, complete = 0.0, True
    for cost in costs:
        if cost is None:
            complete = False
        else:
            priced += cost
    return (priced if complete else None), priced
