"""The pool: one task group owning a reader, a fixed pool of workers and the ordered writer.

    reader ──jobs (bounded)──▶ N workers ──each answer, at once──▶ writer ──▶ journal, output
       ▲  │                     │  ▲                                  │
       │  └ sources (sources.py)┤  └──────────────────────────────────┤
       │           a retry task ◀─┘                                   │
       └──────────────── window: a slot per line, released on write ───┘

No task per line and no unbounded buffer: the job stream holds ``concurrency`` items, and the
window lets the reader run at most ``window`` lines ahead of the oldest line not yet written,
and no further while the lines waiting behind it hold ``window_bytes``, so a slow request at
the head stalls dispatch instead of growing memory. A worker hands its
answer to the writer in the same step of the event loop that received it (`Sink.put`, no
await), so an answer is in the kernel before its request stops holding a slot: a ``kill -9``
can cost only the requests in flight.
A line whose first attempt fails is handed to a task of its own to wait out its backoff and
retry, and its worker goes on with the next line: a line waiting keeps no other from being
sent, while the pacer's slots keep the requests actually in flight within ``concurrency``.
Those tasks are few when the endpoint is healthy, and never more than the window.

The pool knows nothing of routes: a line answered by a source (`sources.py`) is written as it
is; only the lines no source answers go to the workers.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import types
from collections.abc import Callable, Generator, Sequence
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..accounting.ledger import SpendLedger
from ..accounting.spending import BudgetGate
from ..client import Client, Retrying, Withheld
from ..config import RunConfig
from ..disk.writer import OrderedWriter
from ..errors import BatchrunError, FatalEndpointError, RequestError, StopBefore
from ..plural import counted
from ..records import Job, LineError, Result
from ..stats import EXIT_BUDGET, EXIT_STOPPED, RunStats
from ..tiers import Tiering
from .control import Control
from .sources import Source, first_answer

log = logging.getLogger("batchrun")


class Observer(Protocol):
    """Hooks for a progress display; called from the event loop, so they must be quick."""

    def started(self, stats: RunStats) -> None: ...

    def written(self, result: Result, stats: RunStats) -> None: ...

    def retrying(self, job: Job, error: RequestError, wait: float) -> None: ...


class Pool:
    """What the reader and the workers share: the client, the sources, the cap, the ledger,
    the sink and the `Control`; and the service tier the lines sent online go at (``--tier``)."""

    def __init__(self, config: RunConfig, client: Client, sources: Sequence[Source], gate: BudgetGate | None,
                 ledger: SpendLedger, sink: Sink, control: Control, tiering: Tiering | None = None) -> None:
        self.config, self.client, self.sources, self.gate = config, client, sources, gate
        self.ledger, self.sink, self.control, self.tiering = ledger, sink, control, tiering
        # Lines a worker took and did not deliver yet: on the wire, or waiting to be tried again.
        self._taken: dict[int, Job] = {}

    def unsettled(self) -> list[Job]:
        """The lines a worker took that were never delivered: cancelled on the wire (maybe billed)
        or while waiting out a backoff."""
        return list(self._taken.values())

    async def run(self, items: Generator[Job | LineError, None, None], window: anyio.Semaphore,
                  periodic: Callable[[], Any], handle_signals: bool) -> None:
        """Every line of ``items`` answered, written, or left for a later start by a stop.

        :param periodic: the task that saves the checkpoint while the pool runs.
        """
        config, control = self.config, self.control
        job_send, job_recv = anyio.create_memory_object_stream[Job](config.concurrency)
        lanes = [job_recv.clone() for _ in range(config.concurrency)]
        job_recv.close()
        with control.run_scope:
            async with anyio.create_task_group() as tg:
                if handle_signals:
                    tg.start_soon(_watch_signals, control)
                tg.start_soon(periodic)
                async with anyio.create_task_group() as pool:
                    pool.start_soon(self._guarded, self._feed, items, job_send, window)
                    pool.start_soon(self._run_workers, lanes)
                tg.cancel_scope.cancel()  # the signal watcher and the syncer have nothing left to do

    async def _guarded(self, task: Callable[..., Any], *args: Any) -> None:
        """Run a pool task; a condition that dooms the whole run stops it with a reason (`Control.abort`)."""
        try:
            await task(*args)
        except FatalEndpointError as exc:
            self.control.abort(str(exc), next_step=exc.next_step)
        except BatchrunError as exc:
            self.control.abort(str(exc))
        except OSError as exc:
            self.control.abort(f"I/O error: {exc}", disk=True)

    async def _feed(self, items: Generator[Job | LineError, None, None], jobs: MemoryObjectSendStream[Job],
                    window: anyio.Semaphore) -> None:
        control, sink, gate, sources = self.control, self.sink, self.gate, self.sources
        with control.feed_scope, contextlib.closing(items):
            async with jobs:
                for item in items:  # from the end of the ordered prefix on
                    try:
                        window.acquire_nowait()
                    except anyio.WouldBlock:
                        sink.commit()  # the lines answered by the sources give their places back
                        await window.acquire()
                    if sink.full:
                        await sink.room()
                    try:
                        done = first_answer(sources, item)
                    except StopBefore as stop:
                        control.stop(stop.reason, stop.code, grace=None)
                        return
                    if done is not None:
                        if gate is not None and not done.carried_over:
                            gate.budget.answered(done)
                        sink.put(done)
                    elif isinstance(item, Job):
                        if self.tiering is not None:
                            item = self.tiering.shape(item)
                        if gate is not None:
                            sink.commit()  # what the cap counts as spent is on disk before it waits
                        if gate is not None and (over := await gate.reserve(item)) is not None:
                            control.stop(over, EXIT_BUDGET, grace=None)
                            return
                        try:  # `send` yields to the event loop even when there is room
                            jobs.send_nowait(item)
                        except anyio.WouldBlock:
                            await jobs.send(item)
                    else:
                        control.bad_line(item.message)
                        sink.put(Result.from_line_error(item))
                    control.fed += 1
                sink.commit()
                control.fed_all = True

    async def _run_workers(self, lanes: list[MemoryObjectReceiveStream[Job]]) -> None:
        control = self.control
        # The lanes close here, not as each worker ends: a worker ending on an error is followed
        # by its abort, which cancels the reader; a lane closed first would break the reader's send.
        try:
            with control.workers_scope:
                async with anyio.create_task_group() as workers:
                    for jobs in lanes:
                        workers.start_soon(self._guarded, self._work, jobs, workers)
            written, doomed = control.held.at_end(stopped=control.stopping, no_such_path=self.client.no_such_path())
            if doomed is not None:  # no line succeeded, and some were answered 404 for the path
                control.abort(str(doomed), next_step=doomed.next_step)
            for result in written:
                self.sink.put(result)
            self.sink.commit()
        finally:
            for jobs in lanes:
                jobs.close()

    async def _work(self, jobs: MemoryObjectReceiveStream[Job], retries: TaskGroup) -> None:
        client, control, gate = self.client, self.control, self.gate
        while True:
            try:  # a stream's `receive` yields to the event loop even when a job is there
                job = jobs.receive_nowait()
            except anyio.WouldBlock:
                try:
                    job = await jobs.receive()
                except anyio.EndOfStream:
                    return
            except anyio.EndOfStream:
                return
            if control.stopping:
                if gate is not None:
                    gate.release(job)
                continue  # not sent: the next start does it
            self._taken[job.index] = job
            try:
                outcome = await client.first_attempt(job)
            except Withheld:
                await self._left_for_the_next_start()
                return
            if isinstance(outcome, Retrying):
                retries.start_soon(self._guarded, self._retry, outcome)
            else:
                self._deliver(outcome, job)
                await self.sink.committed()

    async def _retry(self, pending: Retrying) -> None:
        try:
            result = await self.client.finish(pending)
        except Withheld:
            await self._left_for_the_next_start()
            return
        self._deliver(result, pending.job)
        await self.sink.committed()

    async def _left_for_the_next_start(self) -> None:
        """With a line the drain kept off the wire, wait for the drain to end, which cancels this
        task (the slot it gave back may have been the last one on the wire): the line is left
        unanswered, as one waiting out its backoff is."""
        self.control.off_the_wire()
        await anyio.sleep_forever()

    def _deliver(self, result: Result, job: Job) -> None:
        """Hand an answer to the files, or hold it (`held.Held`)."""
        gate, control = self.gate, self.control
        del self._taken[job.index]
        self.ledger.settle(job, result, gate.settle(job, result) if gate is not None else None)
        control.off_the_wire()
        if result.unconfirmed:
            control.held.hold(result)
            return
        if result.ok:  # the key and path work: refusals of lines sent before this were those lines' own
            for held in control.held.confirmed_by(result):
                self.sink.put(held)
        self.sink.put(result)


class Sink:
    """Where every finished line goes: queued for the files by `put`, then handed to the kernel,
    counted and shown by `commit` — once for all the answers that arrived in one event-loop turn.

    No request is sent while an answer is only queued: the client commits before each request
    goes on the wire (``Client(before_send=…)``), and a worker commits after its own answer
    before it takes another line. A kill -9 then loses no answer whose slot was reused.
    """

    def __init__(self, writer: OrderedWriter, window: anyio.Semaphore, window_bytes: int, stats: RunStats,
                 observer: Observer | None) -> None:
        self._writer, self._window, self._stats, self._observer = writer, window, stats, observer
        self._window_bytes = window_bytes
        self._drained: anyio.Event | None = None  # set when lines waiting are written
        self._done: list[Result] = []  # put into the ordered output, not committed yet

    def put(self, result: Result) -> None:
        """:raises OSError: writing the errors file failed (the run stops: `Pool._guarded`)."""
        writer = self._writer
        written = writer.add(result)
        if written:
            self._done += written
        stats = self._stats
        if writer.buffered > stats.max_buffered:
            stats.max_buffered = writer.buffered
        if writer.buffered_bytes > stats.max_buffered_bytes:
            stats.max_buffered_bytes = writer.buffered_bytes

    def commit(self) -> None:
        """Hand what was put to the kernel; then count and show the lines it wrote in order, and
        give back their places in the window.

        :raises OSError: writing failed (the run stops: `Pool._guarded`).
        """
        if not self._writer.pending:
            return
        self._writer.write_pending()
        done, self._done = self._done, []
        stats, observer, window = self._stats, self._observer, self._window
        for result in done:
            window.release()
            stats.record(result)
            if observer is not None:
                observer.written(result, stats)
        if done and self._drained is not None:
            self._drained.set()

    def flush(self) -> None:
        """`commit`, then hand the files' buffers to the kernel too: a snapshot of the files then
        agrees with the counters (every line written is counted).

        :raises OSError: writing failed.
        """
        self.commit()
        self._writer.flush()

    async def committed(self) -> None:
        """Commit once the other answers of this event-loop turn are put too: they share the write."""
        await _next_turn()
        self.commit()

    @property
    def full(self) -> bool:
        """Whether the lines waiting for an earlier one hold ``window_bytes`` or more (`room`)."""
        return self._writer.buffered_bytes >= self._window_bytes

    async def room(self) -> None:
        """Wait while the lines waiting for an earlier one hold ``window_bytes`` or more.

        The earliest line was dispatched before any of them and its answer (or failure) drains
        them: waiting here stalls the run no more than the window does.
        """
        while self.full:
            self.commit()
            self._drained = anyio.Event()
            await self._drained.wait()
        self._drained = None


class KeepingSink(Sink):
    """A `Sink` that first hands each finished line to ``keep`` (the response cache's): a run
    without a cache has a plain `Sink`, and does no work for it."""

    def __init__(self, writer: OrderedWriter, window: anyio.Semaphore, window_bytes: int, stats: RunStats,
                 observer: Observer | None, *, keep: Callable[[Result], None]) -> None:
        super().__init__(writer, window, window_bytes, stats, observer)
        self._keep = keep

    def put(self, result: Result) -> None:
        self._keep(result)
        super().put(result)


def retry_hook(observer: Observer | None, control: Control) -> Callable[[Job, RequestError, float], None]:
    def on_retry(job: Job, error: RequestError, wait: float) -> None:
        log.debug("%s (line %d): %s; retrying in %.2f s", job.custom_id, job.line_no, error.code, wait)
        if observer is not None:
            observer.retrying(job, error, wait)
        control.off_the_wire()

    return on_retry


def send_hook(sink: Sink, control: Control) -> Callable[[], bool]:
    """`Client`'s ``before_send``: commit the answers put so far, then say whether a request may
    go on the wire — not while draining, whose deadline could cut it off once billed."""
    def may_send() -> bool:
        sink.commit()
        return not control.draining

    return may_send


async def _watch_signals(control: Control) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if control.stopping:
                log.warning("%s again: cancelling %s in flight", name, counted(control.on_the_wire, "request"))
            elif not control.on_the_wire:
                log.warning("%s: no new requests; none in flight: stopping now", name)
            else:
                log.warning("%s: no new requests; waiting up to %g s for the %d in flight "
                            "(again to cancel them)", name, control.drain_timeout, control.on_the_wire)
            control.stop(f"interrupted by {name}", EXIT_STOPPED, grace=control.drain_timeout)


@types.coroutine
def _next_turn() -> Generator[None, None, None]:
    """Let every task that is ready run before this one goes on: an asyncio task that yields
    nothing is scheduled again at once (asyncio's own ``sleep(0)``), without the backend lookup
    of ``anyio.lowlevel.checkpoint``, which cost several times as much."""
    yield
