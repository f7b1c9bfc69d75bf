"""How the pool is told to stop, on real cancel scopes in a small task group: a stop closes the
feed and drains the wire, a second stop cuts it, an abort keeps its first reason, a disk failure
ends everything at once."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from anyio.abc import TaskStatus

from batchrun.engine.control import BAD_LINE_WARNINGS, Control
from batchrun.stats import EXIT_BUDGET, EXIT_STOPPED, RunStats


def control(drain_timeout: float = 30.0) -> Control:
    return Control(RunStats(Path("out.jsonl"), Path("out.errors.jsonl")), drain_timeout)


async def settle(tg: anyio.abc.TaskGroup, pool: Pool) -> list[str]:
    """Let every task run until it waits; which tasks ended by then. Whatever still waits is
    cancelled, so that a drain that never ends fails the test instead of hanging it."""
    for _ in range(3):  # a cancel scope's cancellation reaches its task on a later turn of the loop
        await anyio.wait_all_tasks_blocked()
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
    tg.cancel_scope.cancel()
    return list(pool.ended)


class Pool:
    """A feed and a worker under the control's scopes, the worker holding one slot on the wire
    until ``answer`` is set; records which of them ran to the end and which were cancelled."""

    def __init__(self, ctl: Control) -> None:
        self.ctl = ctl
        self.ctl.wire = anyio.CapacityLimiter(4)
        self.answer = anyio.Event()
        self.ended: list[str] = []

    async def feed(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with self.ctl.feed_scope:
            task_status.started()
            await anyio.Event().wait()  # the reader: only a cancel ends it here
            self.ended.append("feed finished")
        self.ended.append("feed out")

    async def worker(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self.ctl.wire is not None
        with self.ctl.workers_scope:
            async with self.ctl.wire:
                task_status.started()
                await self.answer.wait()
            self.ctl.off_the_wire()
            await anyio.Event().wait()  # the next line never comes while draining
        self.ended.append("worker out")


async def test_a_stop_closes_the_feed_and_lets_the_request_on_the_wire_finish_then_the_drain_ends() -> None:
    ctl = control()
    pool = Pool(ctl)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.feed)
        await tg.start(pool.worker)
        assert ctl.on_the_wire == 1
        before = anyio.current_time()
        ctl.stop("interrupted", EXIT_STOPPED, grace=5.0)
        after = anyio.current_time()
        await anyio.lowlevel.checkpoint()
        assert (ctl.stopping, ctl.draining, ctl.stats.stop_reason, ctl.stats.stop_code) == (
            True, True, "interrupted", EXIT_STOPPED)
        assert ctl.feed_scope.cancel_called and not ctl.workers_scope.cancel_called
        assert before + 5.0 <= ctl.workers_scope.deadline <= after + 5.0
        pool.answer.set()  # the answer comes back within the grace: the drain is done
        ended = await settle(tg, pool)
    assert ended == ["feed out", "worker out"]
    assert ctl.workers_scope.cancel_called and ctl.on_the_wire == 0


async def test_a_stop_with_nothing_on_the_wire_ends_the_workers_at_once() -> None:
    ctl = control()
    ctl.wire = anyio.CapacityLimiter(4)
    ctl.stop("budget reached", EXIT_BUDGET, grace=5.0)
    assert ctl.workers_scope.cancel_called
    assert (ctl.stats.status, ctl.stats.exit_code) == ("budget", EXIT_BUDGET)


async def test_a_stop_without_a_grace_sets_no_deadline_and_a_second_stop_cuts_the_wire() -> None:
    ctl = control()
    pool = Pool(ctl)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.feed)
        await tg.start(pool.worker)
        ctl.stop("interrupted", EXIT_STOPPED, grace=None)
        assert ctl.workers_scope.deadline == math.inf and not ctl.draining
        assert not ctl.workers_scope.cancel_called
        ctl.stop("interrupted again", EXIT_BUDGET, grace=None)  # a second Ctrl-C
        ended = await settle(tg, pool)
    assert ctl.workers_scope.cancel_called and not pool.answer.is_set()
    assert (ctl.stats.stop_reason, ctl.stats.stop_code) == ("interrupted", EXIT_STOPPED)  # the first one's
    assert ended == ["feed out", "worker out"]


async def test_an_abort_keeps_its_first_reason_and_drains_within_the_shorter_of_the_two_graces(
        caplog: pytest.LogCaptureFixture) -> None:
    ctl = control(drain_timeout=30.0)
    ctl.wire = anyio.CapacityLimiter(4)
    await ctl.wire.acquire()  # one request on the wire
    ctl.stop("interrupted", EXIT_BUDGET, grace=2.0)
    deadline = ctl.workers_scope.deadline
    with caplog.at_level(logging.ERROR, logger="batchrun"):
        ctl.abort("the key was revoked")
        ctl.abort("the account is out of quota")
    assert (ctl.aborted, ctl.stats.stop_reason, ctl.stats.stop_code) == (True, "the key was revoked", EXIT_STOPPED)
    assert ctl.workers_scope.deadline == deadline  # 30 s would be later: the stop's 2 s stands
    assert not ctl.workers_scope.cancel_called and not ctl.run_scope.cancel_called
    assert [record.getMessage() for record in caplog.records] == ["stopping: the key was revoked"]
    ctl.wire.release()
    ctl.off_the_wire()
    assert ctl.workers_scope.cancel_called


async def test_an_abort_drains_within_the_drain_timeout() -> None:
    ctl = control(drain_timeout=7.0)
    ctl.wire = anyio.CapacityLimiter(4)
    await ctl.wire.acquire()
    before = anyio.current_time()
    ctl.abort("the endpoint is down")
    assert ctl.stopping and ctl.draining and ctl.feed_scope.cancel_called
    assert before + 7.0 <= ctl.workers_scope.deadline <= anyio.current_time() + 7.0
    ctl.wire.release()


async def test_a_disk_failure_ends_the_whole_run_at_once_even_after_an_abort() -> None:
    ctl = control()
    ctl.wire = anyio.CapacityLimiter(4)
    await ctl.wire.acquire()
    ctl.abort("the key was revoked")
    assert not ctl.run_scope.cancel_called
    ctl.abort("cannot write the output", disk=True)
    assert ctl.run_scope.cancel_called
    assert ctl.stats.stop_reason == "the key was revoked"
    ctl.wire.release()


async def test_an_answer_off_the_wire_outside_a_drain_ends_nothing() -> None:
    ctl = control()
    ctl.off_the_wire()
    assert not ctl.workers_scope.cancel_called and ctl.on_the_wire == 0


async def test_bad_lines_are_all_counted_and_only_the_first_ones_logged(caplog: pytest.LogCaptureFixture) -> None:
    ctl = control()
    with caplog.at_level(logging.WARNING, logger="batchrun"):
        for n in range(BAD_LINE_WARNINGS + 5):
            ctl.bad_line(f"in.jsonl:{n + 1}: not JSON")
    assert ctl.bad_lines == BAD_LINE_WARNINGS + 5
    assert len(caplog.records) == BAD_LINE_WARNINGS
    assert caplog.records[-1].getMessage() == f"in.jsonl:{BAD_LINE_WARNINGS}: not JSON"
