"""The run: one task group owning a reader, a fixed pool of workers and the ordered writer.

    reader ──jobs (bounded)──▶ N workers ──each answer, at once──▶ writer ──▶ journal, output
       ▲                          │  ▲                                  │
       │           a retry task ◀─┘  └──────────────────────────────────┤
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

A run resumes from its checkpoint (`disk/checkpoint.py`): lines finished by earlier starts are
carried over, never sent again. Stopping (a signal, later a budget) closes the door on new
requests and lets those on the wire finish, within a grace period; lines waiting to be sent
(their backoff, their pace) are not sent, and the next start does them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import anyio.lowlevel
import httpx
import orjson
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import smoke
from .accounting.budget import Budget
from .accounting.pricing import PriceTable, load_prices
from .accounting.report import Report
from .accounting.spending import BudgetGate
from .client import Client, Retrying
from .config import RunConfig
from .disk.checkpoint import Checkpoint, InputScan, Opened, Recovered, identity, scan_input
from .disk.publish import private_file, write_atomically
from .disk.resume import Carryover
from .disk.snapshot import Snapshot
from .disk.writer import OrderedWriter
from .errors import BatchrunError, FatalEndpointError, RequestError
from .pacing import SYSTEM_CLOCK, Clock, Pacer
from .reader import Position, open_input, read_jobs, skip_in_steps
from .records import Job, LineError, Result
from .stats import EXIT_BUDGET, EXIT_STOPPED, RunStats
from .transport import Transport

if TYPE_CHECKING:
    from .scale.budget import ShardBudget

log = logging.getLogger("batchrun")
T = TypeVar("T")

SYNC_INTERVAL = 1.0  # seconds between fsyncs: what a power loss can take at most
BAD_LINE_WARNINGS = 20  # bad input lines logged one by one; the rest are counted (the errors file has each)


class Observer(Protocol):
    """Hooks for a progress display; called from the event loop, so they must be quick."""

    def started(self, stats: RunStats) -> None: ...

    def written(self, result: Result, stats: RunStats) -> None: ...

    def retrying(self, job: Job, error: RequestError, wait: float) -> None: ...


class Answered(Protocol):
    """Lines answered before the run sends anything (through the Batch API: `batchapi.answers`),
    asked for in input order; ``None``: send the line."""

    def take(self, job: Job) -> Result | None: ...


class Control:
    """How the pool is told to stop: no new requests, and a deadline for those in flight.

    An abort stops the reader and the workers at once; every answer already received was
    written when it arrived (`Sink`), so none is bought again by the next start.
    """

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats
        self.stopping = False
        self.draining = False  # stopping, with a grace period for the requests on the wire
        self.aborted = False
        self.wire: anyio.CapacityLimiter | None = None  # the pacer's slots: one per request on the wire
        self.fed = 0  # lines handed on by the reader
        self.fed_all = False  # the reader reached the end of the input
        self.bad_lines = 0  # input lines that cannot be sent, met by this start
        # Lines refused 401/403 after other lines were answered, or 404'd for the path before any
        # success (`errors.Unconfirmed`): held back until a success to a request sent
        # later shows the key and the path work (then they are that line's failure), or the
        # failures show they do not (an abort: then they are not written, and the next start
        # sends them).
        self.held: list[Result] = []
        self.feed_scope = anyio.CancelScope()
        self.workers_scope = anyio.CancelScope()
        self.run_scope = anyio.CancelScope()

    def bad_line(self, message: str) -> None:
        self.bad_lines += 1
        if self.bad_lines <= BAD_LINE_WARNINGS:
            log.warning("%s", message)

    def stop(self, reason: str, code: int, grace: float | None) -> None:
        """Stop dispatching; in-flight requests get ``grace`` seconds (``None``: no limit).

        A second stop cancels the requests still in flight.
        """
        if self.stopping:
            self.workers_scope.cancel()
            return
        self.stopping = True
        self.stats.stop_reason, self.stats.stop_code = reason, code
        self.feed_scope.cancel()
        if grace is not None:
            self.workers_scope.deadline = anyio.current_time() + grace
            self.draining = True
            self.off_the_wire()

    @property
    def on_the_wire(self) -> int:
        """Requests sent and not yet answered (not those waiting out a backoff or their pace)."""
        return int(self.wire.borrowed_tokens) if self.wire is not None else 0

    def off_the_wire(self) -> None:
        """An attempt has its answer (or failure). Draining, once none is left on the wire, the
        drain is done: no line still waiting is sent."""
        if self.draining and not self.on_the_wire:
            self.workers_scope.cancel()

    def abort(self, reason: str, *, disk: bool = False, next_step: str | None = None) -> None:
        """Stop now: a condition that dooms the rest of the run.

        :param disk: writing failed: everything stops.
        :param next_step: see `RunStats.next_step`.
        """
        if not self.aborted:  # the first reason is the one to report
            self.aborted = self.stopping = True
            log.error("stopping: %s", reason)
            self.stats.stop_reason, self.stats.stop_code = reason, EXIT_STOPPED
            self.stats.next_step = next_step
            self.feed_scope.cancel()
            self.workers_scope.cancel()
        if disk:
            self.run_scope.cancel()


async def run_batch(
    config: RunConfig,
    *,
    transport: Transport | httpx.AsyncBaseTransport | None = None,
    observer: Observer | None = None,
    clock: Clock = SYSTEM_CLOCK,
    handle_signals: bool = False,
    answers: Answered | None = None,
    shared: ShardBudget | None = None,
) -> RunStats:
    """Run every line of ``config.input_path`` and write the ordered output.

    Failed requests are error records in the output, not exceptions; the returned stats say
    what happened and `RunStats.exit_code` maps it to an exit code (docs/contract.md, "Exit codes").

    :param transport: how to reach the endpoint (default `AiohttpTransport`); an
        ``httpx.AsyncBaseTransport`` such as ``httpx.MockTransport`` is accepted too.
    :param clock: what pacing and retries read and wait with (tests pass a fake).
    :param handle_signals: on SIGINT/SIGTERM, stop dispatching and drain (main thread only).
        Once every request is done, a SIGINT while the connections close changes nothing, and
        one while the files are saved or published stops that: the next start completes it.
    :param answers: lines already answered, written as they are instead of being sent.
    :param shared: this shard's side of the rate limits and ``--max-cost`` cap shared by the
        shards of one run (`batchrun.scale.budget`).
    :raises InputFileError: the input cannot be opened (nothing was sent).
    :raises ConfigError: the output cannot be written, another run holds it, or its checkpoint
        belongs to another input or options (nothing was sent).
    """
    open_input(config.input_path).close()
    prices = load_prices(config.prices_path, batch_discount=config.batch_discount)
    shard = config.shard
    span = (shard.start, shard.end) if shard is not None else None
    scan = await anyio.to_thread.run_sync(scan_input, config.input_path, span)
    limit = shard.end if shard is not None else scan.size
    budget = await _budget(config, prices, limit, shared)
    checkpoint = Checkpoint(config)
    stats = RunStats(config.out, config.errors_path, Report(prices, source=str(config.out)),
                     total_hint=min(scan.lines, config.limit or scan.lines), simulated=config.mock)
    opened = checkpoint.open(scan, restart=config.restart, retry_failed=config.retry_failed)
    if opened is Opened.PUBLISHED:
        log.info("an earlier start finished this run: its output is now published; nothing to send")
        await anyio.to_thread.run_sync(_count_published, config.out, stats)
        return stats
    if opened is Opened.UP_TO_DATE:
        assert checkpoint.finished is not None
        stats.count_finished_run(checkpoint.finished)
        return stats
    try:
        recovered = await anyio.to_thread.run_sync(checkpoint.recover, stats)
        # The finished lines' ids still go into the duplicate table, but nothing else of them.
        position = await _skip(config.input_path, recovered.prefix, limit, _origin(config))
        writer = OrderedWriter(*checkpoint.open_files(), next_index=checkpoint.first_index + recovered.prefix,
                               sizes=recovered.sizes,
                               last_custom_id=recovered.last_custom_id, run_id=checkpoint.run_id)
    except BaseException:
        checkpoint.close()
        raise
    carryover = Carryover(recovered, retry_failed=config.retry_failed)
    gate = None
    if budget is not None:
        # Everything this output will carry over was paid for, by whichever earlier start: the
        # ordered prefix (counted by now), the journal, and a finished output being retried.
        carried = await anyio.to_thread.run_sync(_carried_cost, recovered, checkpoint, prices)
        budget.carry(stats.report.cost()[1] + carried)
        stats.budget, gate = budget, BudgetGate(budget)
    if recovered.prefix or recovered.finished:
        log.info("resuming: %s lines were finished by an earlier start", f"{stats.written + len(recovered.finished or {}):,}")
    if observer is not None:
        observer.started(stats)
    control = Control(stats)
    try:
        async with (shared.running() if shared is not None else contextlib.nullcontext()),\
                Client(config, transport=transport, clock=clock, on_retry=_retry_hook(observer, control),
                       share=shared) as client:
            stats.pacer, control.wire = client.pacer, client.pacer.slots
            items = smoke.first_lines(read_jobs(config.input_path, limit, start=position, model=config.model,
                                                duplicates=shard.duplicates if shard is not None else frozenset()),
                                      config.limit, recovered.prefix)
            await _run_pool(config, items, client, writer, checkpoint, carryover, answers, gate, control, observer,
                            handle_signals)
    except KeyboardInterrupt:
        # Past the pool SIGINT is Python's own again; only closing the connections was left.
        if not handle_signals:
            raise
    finally:
        stats.finished = time.monotonic()
        carryover.close()
        every_line = control.fed_all and writer.next_index == checkpoint.first_index + carryover.prefix + control.fed
        if every_line and (cut := smoke.cut_at(config.limit, scan.lines)) is not None:  # kept, not published
            every_line = False
            smoke.stop(stats, cut, scan.lines, checkpoint.output)
        facts = _facts(config, scan, writer.next_index - checkpoint.first_index + writer.buffered + carryover.left)
        try:
            saved = _close_writer(writer, stats)
            if saved:
                _save_snapshot(checkpoint, writer, stats)
            if saved and every_line:
                _commit(config, checkpoint, stats, facts, writer.sizes[0])
            else:
                checkpoint.close()
                _save_report(config, checkpoint, stats, facts)
        except KeyboardInterrupt:
            if not handle_signals:
                raise
            # Every step here is one a crash may stop: the next start completes it, sending nothing.
            checkpoint.close()
            if every_line:
                stats.stop_reason = (f"interrupted while publishing the output: all {stats.written:,} lines are "
                                     "answered and kept in the checkpoint; the next start publishes them and sends "
                                     "none again")
            stats.stop_reason = stats.stop_reason or "interrupted while saving the checkpoint"
            stats.stop_code = EXIT_STOPPED
            _save_report(config, checkpoint, stats, facts)
    if control.bad_lines > BAD_LINE_WARNINGS:
        errors = config.errors_path if stats.stop_reason is None else checkpoint.errors
        log.warning("… and %s more bad input lines: see %s", f"{control.bad_lines - BAD_LINE_WARNINGS:,}", errors)
    return stats


def _count_published(out: Path, stats: RunStats) -> None:
    """Count a published output into ``stats``, as a resume counts the lines it carries over."""
    with out.open("rb") as f:
        for index, line in enumerate(f):
            stats.record(Result.from_line(index, line))


def _carried_cost(recovered: Recovered, checkpoint: Checkpoint, prices: PriceTable) -> float:
    """USD spent on the lines past the ordered prefix that earlier starts finished."""
    spent = Report(prices)

    def charge(index: int, line: bytes) -> None:
        with contextlib.suppress(ValueError):  # unreadable: the line is done again, and charged then
            spent.add_result(Result.from_line(index, line))

    for entry in (recovered.finished or {}).values():
        charge(entry.index, entry.line)
    if recovered.previous is not None:
        with open(checkpoint.previous, "rb", opener=private_file) as f:
            for index, line in enumerate(f):
                if index >= recovered.prefix:
                    charge(index, line)
    return spent.cost()[1]


def _origin(config: RunConfig) -> Position | None:
    """Where a shard's lines start, numbered as the whole run numbers them."""
    shard = config.shard
    return None if shard is None else Position(shard.start, shard.first_line, shard.first_index)


async def _skip(path: Path, count: int, limit: int, origin: Position | None) -> Position:
    """Read past the finished prefix for its ids, letting the loop run between steps (signals,
    the fsync of a previous start's files) and nothing else: there is nothing else to do yet."""
    steps = skip_in_steps(path, count, limit, origin)
    with contextlib.closing(steps):
        position = next(steps)
        for position in steps:  # noqa: B007 -- the last one is the answer
            await anyio.lowlevel.checkpoint()
    return position


def _retry_hook(observer: Observer | None, control: Control) -> Callable[[Job, RequestError, float], None]:
    def on_retry(job: Job, error: RequestError, wait: float) -> None:
        log.debug("%s (line %d): %s; retrying in %.2f s", job.custom_id, job.line_no, error.code, wait)
        if observer is not None:
            observer.retrying(job, error, wait)
        control.off_the_wire()

    return on_retry


async def _run_pool(config: RunConfig, items: Generator[Job | LineError, None, None], client: Client,
                    writer: OrderedWriter, checkpoint: Checkpoint, carryover: Carryover, answers: Answered | None,
                    gate: BudgetGate | None, control: Control, observer: Observer | None,
                    handle_signals: bool) -> None:
    window = anyio.Semaphore(config.window or config.concurrency)
    sink = Sink(writer, window, config.window_bytes, control.stats, observer)
    job_send, job_recv = anyio.create_memory_object_stream[Job](config.concurrency)
    lanes = [job_recv.clone() for _ in range(config.concurrency)]
    job_recv.close()
    abort = control.abort
    with control.run_scope:
        async with anyio.create_task_group() as tg:
            if handle_signals:
                tg.start_soon(_watch_signals, control, config.drain_timeout)
            tg.start_soon(_sync_periodically, writer, checkpoint, control)
            async with anyio.create_task_group() as pool:
                pool.start_soon(_guarded, abort, _feed, items, carryover, answers, gate, job_send, sink, window, control)
                pool.start_soon(_run_workers, abort, client, gate, lanes, sink, control)
            tg.cancel_scope.cancel()  # the signal watcher and the syncer have nothing left to do


async def _guarded(abort: Callable[..., None], task: Callable[..., Any], *args: Any) -> None:
    """Run a pool task; a condition that dooms the whole run stops it with a reason (`Control.abort`)."""
    try:
        await task(*args)
    except FatalEndpointError as exc:
        abort(str(exc), next_step=exc.next_step)
    except BatchrunError as exc:
        abort(str(exc))
    except OSError as exc:
        abort(f"I/O error: {exc}", disk=True)


async def _feed(items: Generator[Job | LineError, None, None], carryover: Carryover, answers: Answered | None,
                gate: BudgetGate | None, jobs: MemoryObjectSendStream[Job], sink: Sink, window: anyio.Semaphore,
                control: Control) -> None:
    with control.feed_scope, contextlib.closing(items):
        async with jobs:
            for item in items:  # from the end of the ordered prefix on
                try:
                    window.acquire_nowait()
                except anyio.WouldBlock:
                    await window.acquire()
                await sink.room()
                done = carryover.take(item)
                if done is None and answers is not None and isinstance(item, Job):
                    done = answers.take(item)
                if done is not None:
                    sink.put(done)
                elif isinstance(item, Job):
                    if gate is not None and (over := await gate.reserve(item)) is not None:
                        control.stop(over, EXIT_BUDGET, grace=None)
                        return
                    await _send(jobs, item)
                else:
                    control.bad_line(item.message)
                    sink.put(Result.from_line_error(item))
                control.fed += 1
            control.fed_all = True


async def _run_workers(abort: Callable[[str], None], client: Client, gate: BudgetGate | None,
                       lanes: list[MemoryObjectReceiveStream[Job]], sink: Sink, control: Control) -> None:
    # The lanes close here, not as each worker ends: a worker ending on an error is followed
    # by its abort, which cancels the reader; a lane closed first would break the reader's send.
    try:
        with control.workers_scope:
            async with anyio.create_task_group() as workers:
                for jobs in lanes:
                    workers.start_soon(_guarded, abort, _work, abort, client, gate, jobs, sink, control, workers)
        if not control.aborted and control.held and (missing := client.no_such_path()):
            control.abort(str(missing), next_step=missing.next_step)  # no line succeeded; some were 404 for the path
        if not control.aborted:  # nothing answered since: the refusals were those lines' own
            for result in control.held:
                sink.put(result)
    finally:
        for jobs in lanes:
            jobs.close()


async def _work(abort: Callable[[str], None], client: Client, gate: BudgetGate | None,
                jobs: MemoryObjectReceiveStream[Job], sink: Sink, control: Control, retries: TaskGroup) -> None:
    while True:
        try:
            job = await _receive(jobs)
        except anyio.EndOfStream:
            return
        if control.stopping:
            if gate is not None:
                gate.release(job)
            continue  # not sent: the next start does it
        outcome = await client.first_attempt(job)
        if isinstance(outcome, Retrying):
            retries.start_soon(_guarded, abort, _retry, client, gate, outcome, sink, control)
        else:
            _deliver(gate, outcome, job, sink, control)


async def _retry(client: Client, gate: BudgetGate | None, pending: Retrying, sink: Sink, control: Control) -> None:
    result = await client.finish(pending)
    _deliver(gate, result, pending.job, sink, control)


def _deliver(gate: BudgetGate | None, result: Result, job: Job, sink: Sink, control: Control) -> None:
    """Hand an answer to the files (see `Control.held` for `Result.unconfirmed`)."""
    if gate is not None:
        gate.settle(job, result)
    control.off_the_wire()
    if result.unconfirmed:
        control.held.append(result)
        return
    if control.held and result.ok:  # the key and path work: failures sent before this were those lines' own
        for held in [held for held in control.held if held.dispatched < result.dispatched]:
            sink.put(held)
        control.held = [held for held in control.held if held.dispatched > result.dispatched]
    sink.put(result)


class Sink:
    """Where every finished line goes, synchronously: into the files, then counted and shown.

    No await between an answer's arrival and `put`: a cancellation (an abort, the end of the
    grace period) cannot come between them, and no other request can be sent in the slot the
    answer just freed before the answer is in the kernel.
    """

    def __init__(self, writer: OrderedWriter, window: anyio.Semaphore, window_bytes: int, stats: RunStats,
                 observer: Observer | None) -> None:
        self._writer, self._window, self._stats, self._observer = writer, window, stats, observer
        self._window_bytes = window_bytes
        self._drained: anyio.Event | None = None  # set when lines waiting are written

    def put(self, result: Result) -> None:
        """:raises OSError: writing failed (the run stops: `_guarded`)."""
        stats, observer, writer = self._stats, self._observer, self._writer
        written = writer.add(result)
        for done in written:
            self._window.release()
            stats.record(done)
            if observer is not None:
                observer.written(done, stats)
        if written and self._drained is not None:
            self._drained.set()
        stats.max_buffered = max(stats.max_buffered, writer.buffered)
        stats.max_buffered_bytes = max(stats.max_buffered_bytes, writer.buffered_bytes)

    async def room(self) -> None:
        """Wait while the lines waiting for an earlier one hold ``window_bytes`` or more.

        The earliest line was dispatched before any of them and its answer (or failure) drains
        them: waiting here stalls the run no more than the window does.
        """
        while self._writer.buffered_bytes >= self._window_bytes:
            self._drained = anyio.Event()
            await self._drained.wait()
        self._drained = None


async def _sync_periodically(writer: OrderedWriter, checkpoint: Checkpoint, control: Control) -> None:
    """Bound what a power loss can take, and what a resume must read back (`disk/snapshot.py`); a
    disk that fails here stops the run, resumable."""
    try:
        while True:
            await anyio.sleep(SYNC_INTERVAL)
            writer.flush()
            prefix = _snapshot(writer, checkpoint, control.stats)  # what the bytes about to be fsynced hold
            # Not cancellable mid-way: the files are closed only after this returns.
            await anyio.to_thread.run_sync(_fsync_all, writer.fsync_targets())
            await anyio.to_thread.run_sync(checkpoint.save_snapshot, prefix)
    except OSError as exc:
        control.abort(f"I/O error while saving to disk: {exc}", disk=True)


def _snapshot(writer: OrderedWriter, checkpoint: Checkpoint, stats: RunStats) -> Snapshot:
    output_bytes, errors_bytes = writer.sizes
    return Snapshot(writer.next_index - checkpoint.first_index, output_bytes, errors_bytes, writer.last_custom_id,
                    stats.report.state())


def _save_snapshot(checkpoint: Checkpoint, writer: OrderedWriter, stats: RunStats) -> None:
    """After the files are closed (and fsynced): the next start reads back none of the prefix."""
    try:
        checkpoint.save_snapshot(_snapshot(writer, checkpoint, stats))
    except OSError as exc:  # only a resume's speed depends on it
        log.warning("could not save %s: %s", checkpoint.snapshot, exc)


async def _watch_signals(control: Control, drain_timeout: float) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if control.stopping:
                log.warning("%s again: cancelling the %d requests in flight", name, control.on_the_wire)
            elif not control.on_the_wire:
                log.warning("%s: no new requests; none in flight: stopping now", name)
            else:
                log.warning("%s: no new requests; waiting up to %g s for the %d in flight "
                            "(again to cancel them)", name, drain_timeout, control.on_the_wire)
            control.stop(f"interrupted by {name}", EXIT_STOPPED, grace=drain_timeout)


async def _budget(config: RunConfig, prices: PriceTable, size: int, shared: ShardBudget | None) -> Budget | None:
    """The spending cap, checked before anything else happens.

    :raises ConfigError: a model in the input has no price, so the cap could not be enforced.
    """
    if config.max_cost is None:
        return None
    models = await anyio.to_thread.run_sync(_models_in, config, size)
    return Budget(config.max_cost, prices, models, pool=shared)


def _models_in(config: RunConfig, size: int) -> set[str | None]:
    items = read_jobs(config.input_path, size, start=_origin(config), model=config.model)
    return {item.model for item in items if isinstance(item, Job)}


def _facts(config: RunConfig, scan: InputScan, lines_finished: int) -> dict[str, Any]:
    """What the report of a run says besides its counters and how it ended: how far it got, and
    what makes another start the same run (`identity`), so that one finds it up to date."""
    same_run = identity(scan, config)
    return {"input_lines": scan.lines, "lines_finished": lines_finished,
            "input": {"path": str(config.input_path), **same_run["input"]}, "options": same_run["options"],
            "max_cost": config.max_cost}


def _save_report(config: RunConfig, checkpoint: Checkpoint, stats: RunStats, facts: dict[str, Any]) -> None:
    """The report of a run that stopped before publishing, as JSON beside the output, written
    whole or not at all. What it counts is the ordered output in the checkpoint."""
    stats.report.source = str(checkpoint.output if checkpoint.output.exists() else config.out)
    try:
        write_atomically(config.report_path, report_json(stats, facts))
    except OSError as exc:
        log.warning("could not write the report %s: %s", config.report_path, exc)


def report_json(stats: RunStats, facts: dict[str, Any], output_bytes: int | None = None) -> bytes:
    """The report document (`Report.to_dict`), after its schema how the run ended (`RunStats.status`,
    the exit code, why it stopped) and the `_facts`; ``output_bytes``, of a published output."""
    stats.report.set_wall_time(stats.wall_s, lines=stats.sent_this_start, tokens=stats.tokens_this_start)
    counted = stats.report.to_dict()
    doc = {"schema": counted.pop("schema"), "status": stats.status, "exit_code": stats.exit_code,
           "stop_reason": stats.stop_reason, **facts, "output_bytes": output_bytes, **counted}
    doc["simulated"] = stats.simulated
    if "shard" in facts["input"]:  # a part's counters, for the parts to add up exactly (`scale.parts`)
        doc["counters"] = stats.report.state()
    if stats.pacer is not None:
        doc["pacing"] = _pacing(stats.pacer)
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def _pacing(pacer: Pacer) -> dict[str, object]:
    """How the run was paced, for the report: a run's own, not in the output file."""
    acceptance = pacer.acceptance
    return {
        "limits_per_minute": pacer.limits(),
        "limits_announced_by_endpoint": pacer.quota.announced,
        "token_charge_scale": pacer.quota.scale,
        "concurrency": pacer.concurrency,
        "rate_limited_responses": pacer.rate_limited,
        "unexplained_429s": {"state_at_end": acceptance.state, "shedding_share": acceptance.noise,
                             "paced_rps_at_end": acceptance.rate},
        "endpoint": pacer.breaker.state,
    }


def _fsync_all(fds: list[int]) -> None:
    for fd in fds:
        os.fsync(fd)


def _close_writer(writer: OrderedWriter, stats: RunStats) -> bool:
    """Flush and fsync everything written; whether that worked."""
    try:
        writer.close(sync=True)
    except OSError as exc:
        stats.stop_reason, stats.stop_code = f"I/O error while saving: {exc}", EXIT_STOPPED
        return False
    return True


def _commit(config: RunConfig, checkpoint: Checkpoint, stats: RunStats, facts: dict[str, Any],
            output_bytes: int) -> None:
    """Every line is written: publish the output and the report (a stop that came after the last
    line changes nothing). If publishing fails part way, the next start completes it."""
    stats.stop_reason = None
    stats.report.source = str(config.out)
    report = report_json(stats, facts, output_bytes)
    try:
        checkpoint.commit(report)
    except OSError as exc:
        stats.stop_reason, stats.stop_code = f"I/O error while publishing the output: {exc}", EXIT_STOPPED
        if checkpoint.report.exists():  # until the next start publishes it; one published already stays
            _save_report(config, checkpoint, stats, facts)


# A memory object stream's `send` and `receive` yield to the event loop even when they could
# act at once; these act at once when they can and wait only when they must.


async def _send(stream: MemoryObjectSendStream[T], item: T) -> None:
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)


async def _receive(stream: MemoryObjectReceiveStream[T]) -> T:
    try:
        return stream.receive_nowait()
    except anyio.WouldBlock:
        return await stream.receive()
