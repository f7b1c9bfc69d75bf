"""How a shard's task finds the run's actor, without a cluster: the driver creates the actor
right after it submits the tasks, so a task on an idle worker may look before it is there."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from batchrun.scale import ray_run
from batchrun.scale.ray_run import _desk


def ray_finding(after: int) -> tuple[Any, list[str]]:
    """A Ray whose ``get_actor`` finds the actor from its ``after``-th look on (never: -1)."""
    looked: list[str] = []

    def get_actor(name: str) -> str:
        looked.append(name)
        if after < 0 or len(looked) <= after:
            raise ValueError(f"Failed to look up actor with name '{name}'")
        return f"handle of {name}"

    return SimpleNamespace(get_actor=get_actor), looked


def test_a_task_that_looks_before_the_driver_created_the_actor_waits_for_it() -> None:
    ray, looked = ray_finding(after=3)
    paused: list[float] = []
    assert _desk(ray, "desk-1", paused.append) == "handle of desk-1"
    assert looked == ["desk-1"] * 4 and len(paused) == 3


def test_an_actor_never_created_fails_the_task_after_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_run, "DESK_WAIT", 0.05)
    ray, looked = ray_finding(after=-1)
    paused: list[float] = []
    with pytest.raises(ValueError, match="desk-1"):
        _desk(ray, "desk-1", paused.append)
    assert sum(paused) == pytest.approx(0.05) and len(looked) == len(paused) + 1
