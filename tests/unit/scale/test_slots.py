"""The driver's slots: at most ``--shards`` parts at once, the next one started in the slot that
frees first, so a slow part does not hold up the rest (`scale.slots`), with a scripted runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from batchrun.scale.slots import run_parts


@dataclass(frozen=True)
class Outcome:
    part: int
    stop_reason: str | None = None


class Script:
    """A runner whose parts end when ``ends(part, running)`` says so, each after a look: the
    order of events is the test's, never the clock's.

    :param ends: whether ``part`` ends now, given the parts running.
    """

    def __init__(self, ends: Callable[[int, set[int]], bool], stops: frozenset[int] = frozenset()) -> None:
        self.ends = ends
        self.stops = stops
        self.running: set[int] = set()
        self.started: list[int] = []
        self.most = 0  # the most parts ever running at once
        self.cancelled: list[tuple[int, bool]] = []
        self.interrupt_on: int | None = None  # raise KeyboardInterrupt on this call of `ended`
        self.calls = 0

    def start(self, part: int) -> int:
        self.running.add(part)
        self.started.append(part)
        self.most = max(self.most, len(self.running))
        return part

    def ended(self, running: list[int], timeout: float) -> list[int]:
        self.calls += 1
        if self.calls == self.interrupt_on:
            raise KeyboardInterrupt
        done = [part for part in running if self.ends(part, self.running)]
        self.running -= set(done)
        return done

    def outcome(self, handle: int, part: int) -> Outcome:
        assert handle == part
        return Outcome(part, "stopped" if part in self.stops else None)

    def cancel(self, handle: int, *, force: bool) -> None:
        self.cancelled.append((handle, force))


def test_never_more_parts_run_at_once_than_the_shards_and_every_part_runs_in_order() -> None:
    script = Script(lambda part, running: True)  # each part ends at the first look
    looks: list[int] = []
    ran = run_parts(script, list(range(10)), 3, lambda: looks.append(len(script.running)))
    assert script.most == 3
    assert script.started == list(range(10))
    assert sorted(r.part for r in ran) == list(range(10))
    assert looks  # the progress is shown while the parts run


def test_a_slow_part_does_not_hold_up_the_rest_the_other_slot_takes_them() -> None:
    # Part 0 ends only once every other part has (or, so a broken scheduler cannot hang the test,
    # when it is the last one running).
    script = Script(lambda part, running: part != 0 or running == {0})
    ran = run_parts(script, list(range(8)), 2, lambda: None)
    assert [r.part for r in ran] == [1, 2, 3, 4, 5, 6, 7, 0]
    assert {r.part: r.slot for r in ran} == {0: 0, **{part: 1 for part in range(1, 8)}}


def test_a_part_that_stops_leaves_the_rest_unstarted_and_those_running_end_as_they_do() -> None:
    # 0 ends first; 1 stops (the cap, say) while 2 runs in the slot 0 freed; 2 ends as it does.
    script = Script(lambda part, running: part == 0 or (part == 1 and 2 in running) or running == {2},
                    stops=frozenset({1}))
    ran = run_parts(script, list(range(6)), 2, lambda: None)
    assert script.started == [0, 1, 2]  # none after 1 stopped
    assert [r.part for r in ran] == [0, 1, 2]
    assert script.cancelled == []


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_drains_the_parts_running_and_starts_no_other(presses: int) -> None:
    script = Script(lambda part, running: part != 0 or len(script.cancelled) >= presses)
    script.interrupt_on = 2
    if presses == 2:  # the second Ctrl-C comes while the first drains
        calls = {"n": 0}
        first = script.ended

        def again(running: list[int], timeout: float) -> list[int]:
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return first(running, timeout)

        script.ended = again  # type: ignore[method-assign]
    ran = run_parts(script, list(range(6)), 2, lambda: None)
    # Parts 0 and 1 started, 1 ended, 2 started; then Ctrl-C: 0 and 2 asked to drain (then forced).
    assert script.started == [0, 1, 2]
    assert script.cancelled[:2] == [(0, False), (2, False)]
    assert script.cancelled[2:] == ([(0, True), (2, True)] if presses == 2 else [])
    assert sorted(r.part for r in ran) == [0, 1, 2]
