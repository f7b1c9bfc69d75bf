"""``--via batch`` from start to end: plan, upload, submit, poll, download, then write.

    plan ──▶ upload ──▶ create ──▶ poll … ended ──▶ download, order ──▶ engine.run_batch(sources=[…])
      └───────── each id in the ledger (ledger.py) as soon as it exists ─────────┘

A start does whatever the ledger says is left: it plans only when there is no ledger, uploads
only a batch with no file id, creates only a batch with no batch id (after looking for one an
earlier start may have created), polls what is in flight and downloads what has ended. Run
again, the same command never submits a line twice; `kill -9` anywhere costs at most an unused
upload.

With a deadline (``BatchOptions.deadline``, from when the batches were planned), the batches
still running then are cancelled; what they answered is kept, and the lines they did not
answer, with those of batches never submitted, are sent online by the engine.
"""

from __future__ import annotations

import logging
import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from itertools import compress
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from ..cache.source import ResponseCache, open_cache
from ..config import RunConfig
from ..disk.identity import identity, scan_input
from ..disk.lock import RunLock
from ..disk.rundir import make_run_dir
from ..disk.runfiles import checked
from ..engine import Observer, run_batch
from ..engine.sources import Source, first_answer
from ..errors import ConfigError, FatalEndpointError
from ..pacing import SYSTEM_CLOCK, Clock
from ..plural import counted
from ..reader import open_input, read_jobs
from ..records import Job, LineError, failure
from ..stats import EXIT_OK, EXIT_STOPPED, RunStats
from ..transport import Transport, as_transport
from . import answers, cap
from .api import BatchApi, metadata
from .ledger import ENDED, Ledger, Part, remove_dir
from .options import FIRST_POLL, BatchOptions
from .pending import Pending
from .plan import part_file, plan
from .queue import BatchQueue, refused_for_queue

if TYPE_CHECKING:  # only annotates: loaded when an httpx transport is passed in
    import httpx

log = logging.getLogger("batchrun")

VIA = "batch"  # the route, in the run's identity (`identity.identity`)


async def run_via_batch(
    config: RunConfig,
    options: BatchOptions,
    *,
    transport: Transport | httpx.AsyncBaseTransport | None = None,
    observer: Observer | None = None,
    clock: Clock = SYSTEM_CLOCK,
    wall: Callable[[], float] = time.time,
    handle_signals: bool = False,
    sources: Sequence[Source] = (),
) -> RunStats | Pending:
    """Run ``config``'s input through the Batch API (module docstring); the engine writes the
    output as an online run's once every batch has ended.

    :param wall: seconds since the epoch (the deadline, and when batches were made, span starts).
    :param handle_signals: SIGINT/SIGTERM while submitting or polling stop this start only:
        the batches go on at the provider, and the next start picks them up.
    :param sources: answers known before anything is sent (`engine.sources`): their lines are
        not planned into batches, and the engine takes them first.
    :raises ConfigError: / :raises InputFileError: as `engine.run_batch`; or the batches'
        folder belongs to another input or options.
    """
    if config.span is not None:
        raise ConfigError("a run through the Batch API is one process's: it cannot be sharded")
    if config.limit is not None:
        raise ConfigError("--limit sends the first lines online, from one process: it cannot be combined with --via batch")
    config = checked(config)
    open_input(config.input_path).close()
    directory = config.batches_path
    if not directory.exists() and options.cancel:
        raise ConfigError(f"{config.out} has no batches to cancel ({directory} does not exist)")
    # One cache for the plan and the engine: a line it answers is not submitted, and the engine
    # answers it from there; the batches' answers are kept in it as the engine writes them.
    cache = await anyio.to_thread.run_sync(open_cache, config)
    try:
        return await _run(config, options, cache, transport=transport, observer=observer, clock=clock, wall=wall,
                          handle_signals=handle_signals, sources=sources)
    finally:
        if cache is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(cache.close)


async def _run(config: RunConfig, options: BatchOptions, cache: ResponseCache | None, *,
               transport: Transport | httpx.AsyncBaseTransport | None, observer: Observer | None, clock: Clock,
               wall: Callable[[], float], handle_signals: bool,
               sources: Sequence[Source]) -> RunStats | Pending:
    directory = config.batches_path
    # A checkpoint with no batches is an online run's; a finished output is up to date, or
    # another run's: the engine says which (or completes its publishing), sending nothing.
    if not directory.exists() and not config.restart and \
            (config.checkpoint_path.exists() or (config.out.exists() and not config.retry_failed)):
        return await run_batch(config, transport=transport, observer=observer, clock=clock,
                               handle_signals=handle_signals, sources=sources, via=VIA, cache=cache)
    created = make_run_dir(directory, config.out)
    lock = RunLock(directory / "lock", config.out)
    lock.acquire()
    try:
        try:
            ledger = await _ledger(config, options, wall, cache, sources)
        except BaseException:
            if created and Ledger.load(directory) is None:  # refused before planning: leave nothing behind
                remove_dir(directory)
            raise
        lifecycle = _Lifecycle(config, options, ledger, as_transport(transport, 8), clock, wall)
        try:
            pending = await lifecycle.run(handle_signals)
        finally:
            if transport is None:  # one given is the engine's to close
                await lifecycle.transport.aclose()
        if pending is not None:
            return pending
        held = lifecycle.cap.held_back
        stop = (min(part.first_index for part in held), lifecycle.cap.stop_reason()) if held else None
        collected = answers.Answers(ledger, online=lifecycle.online, stop=stop)
        try:
            stats = await run_batch(config, transport=transport, observer=observer, clock=clock,
                                    handle_signals=handle_signals, sources=[*sources, collected], via=VIA,
                                    cache=cache)
        finally:
            collected.close()
        if stats.stop_reason is None:
            try:
                ledger.remove()
            except OSError as exc:  # the output is published; a later start finds it up to date and removes it
                log.warning("could not remove %s: %s", directory, exc)
        return stats
    finally:
        lock.release()


async def _ledger(config: RunConfig, options: BatchOptions, wall: Callable[[], float],
                  cache: ResponseCache | None, sources: Sequence[Source]) -> Ledger:
    """The ledger in the batches' folder, or a new plan (`plan.plan`) when there is none."""
    directory = config.batches_path
    scan = await anyio.to_thread.run_sync(scan_input, config.input_path)
    same_run = identity(scan, config, VIA)
    ledger = Ledger.load(directory)
    if ledger is not None and ledger.identity != same_run:
        raise ConfigError(f"{directory} holds the batches of another input or options; run the original command "
                          "to collect them (or add --cancel to cancel them), or remove the folder")
    if ledger is not None and config.restart and not options.cancel:
        if ledger.in_flight:
            raise ConfigError(f"{counted(len(ledger.in_flight), 'batch', 'batches')} of this run still at the provider: "
                              "collect them (run without --restart) or cancel them (--cancel) before starting over")
        remove_dir(directory, keep="lock")
        ledger = None
    if ledger is None:
        ledger = await anyio.to_thread.run_sync(_plan, config, options, same_run, wall(), cache, sources)
    return ledger


def _plan(config: RunConfig, options: BatchOptions, same_run: dict[str, Any], now: float,
          cache: ResponseCache | None, sources: Sequence[Source]) -> Ledger:
    size = same_run["input"]["size"]
    items: Iterator[Job | LineError] = read_jobs(config.input_path, size, model=config.model)
    retry = config.retry_failed and config.out.exists()
    if retry:  # only the lines the finished output failed
        items = compress(items, _failed_lines(config))
    jobs = (item for item in items if isinstance(item, Job) and (cache is None or not cache.holds(item))
            and first_answer(sources, item) is None)
    parts = plan(jobs, options.limits, config.batches_path, config.input_path, cap.split(config))
    ledger = Ledger(config.batches_path, secrets.token_hex(8), now, same_run, parts, retry_failed=retry)
    ledger.save()
    lines = sum(part.lines for part in parts)
    log.info("planned %s for %s", counted(len(parts), "batch", "batches"), counted(lines, "line"))
    return ledger


def _failed_lines(config: RunConfig) -> Iterator[bool]:
    """Whether each line of the finished output failed, in order; every line after its end did."""
    with open(config.out, "rb") as f:
        for line in f:
            try:
                yield failure(orjson.loads(line)) is not None
            except ValueError:
                yield True
    while True:
        yield True


class _Lifecycle:
    def __init__(self, config: RunConfig, options: BatchOptions, ledger: Ledger, transport: Transport, clock: Clock,
                 wall: Callable[[], float]) -> None:
        self.config, self.options, self.ledger = config, options, ledger
        self.transport = transport
        self.api = BatchApi(config, transport, clock)
        self.cap = cap.BatchCap(config, ledger)
        self.queue = BatchQueue(ledger, options.limits.queue_tokens)
        self.clock = clock
        self.wall = wall
        self.online = False  # the deadline passed: what the batches did not answer goes online
        self._poll_wait = FIRST_POLL / 2

    @property
    def deadline(self) -> float | None:
        return None if self.options.deadline is None else self.ledger.created + self.options.deadline

    def past_deadline(self) -> bool:
        deadline = self.deadline
        return deadline is not None and self.wall() >= deadline

    async def run(self, handle_signals: bool) -> Pending | None:
        """Submit, poll and download until every batch has ended and is collected (``None``),
        or this start stops first (`Pending`)."""
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                if handle_signals:
                    tg.start_soon(self._watch_signals, scope)
                pending = await self._steps()
                tg.cancel_scope.cancel()
            return pending
        return Pending(self._interrupted, EXIT_STOPPED)

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.warning("%s: stopping; the batches submitted go on at the provider", signal.Signals(signum).name)
                scope.cancel()
                return

    @property
    def _interrupted(self) -> str:
        submitted = sum(part.batch_id is not None for part in self.ledger.parts)
        return (f"interrupted: {submitted} of {len(self.ledger.parts)} batches are at the provider and go on there; "
                f"run the same command again to collect them (or add --cancel to cancel them)")

    async def _steps(self) -> Pending | None:
        try:
            await self._find_unrecorded()
            if self.options.cancel:
                await self._cancel(self.ledger.in_flight, "cancelling")
                self._cancel_unsubmitted()
            elif self.past_deadline():
                await self._move_online()
            else:
                await self._submit()
            while True:
                await self._poll()
                await self._collect()
                if not self.options.cancel and not self.online:  # what waited for the queue
                    await self._submit()
                if all(part.collected or (self.online and part.batch_id is None) or part in self.cap.held_back
                       for part in self.ledger.parts):
                    return None
                if self.options.detach:
                    return Pending(self._detached(), EXIT_OK)
                if not self.online and self.past_deadline():
                    await self._move_online()
                    continue
                await self._wait()
        except FatalEndpointError as exc:
            return Pending(f"{exc}; the batches submitted go on at the provider: run the same command again to "
                           "go on", EXIT_STOPPED)

    async def _submit(self) -> None:
        ledger = self.ledger
        for part in ledger.parts:
            if part.batch_id is not None or part.ended or part in self.cap.held_back:
                continue
            if self.past_deadline():
                return
            if not self.queue.fits(part):  # it waits for earlier batches to end
                continue
            if not self.cap.fits(part):
                log.warning("batch %d of %d (%s lines) is held back: its worst case does not fit under --max-cost",
                            part.number + 1, len(ledger.parts), f"{part.lines:,}")
                continue
            if part.file_id is None:
                part.file_id = await self.api.upload(part_file(ledger.dir, part.number))
                await anyio.to_thread.run_sync(ledger.save)
            batch = await self.api.create_batch(part.file_id, part.url, metadata(ledger.run, part.number),
                                                ledger.created)
            await self._record(part, batch)
            log.info("submitted batch %d of %d (%s lines, %s): %s", part.number + 1, len(ledger.parts),
                     f"{part.lines:,}", part.model or part.url, part.batch_id)

    async def _find_unrecorded(self) -> None:
        """The batches an earlier start may have created and not recorded (it was killed, or the
        reply was lost): those with an uploaded file and no batch id are looked for, so that
        none is created twice, nor left running unknown while its lines go online."""
        for part in self.ledger.parts:
            if part.file_id is not None and part.batch_id is None:
                found = await self.api.find_batch(metadata(self.ledger.run, part.number), self.ledger.created)
                if found is not None and found.get("id") != part.refused:
                    await self._record(part, found)
                    log.info("found batch %d of %d, created by an earlier start: %s", part.number + 1,
                             len(self.ledger.parts), part.batch_id)

    async def _record(self, part: Part, batch: dict[str, Any]) -> None:
        batch_id = batch.get("id")
        if not isinstance(batch_id, str) or not batch_id:
            raise FatalEndpointError("POST /v1/batches: the reply has no 'id'")
        part.batch_id = batch_id
        self._update(part, batch)
        await anyio.to_thread.run_sync(self.ledger.save)

    def _update(self, part: Part, batch: dict[str, Any]) -> bool:
        """Take in ``part``'s Batch object; a batch refused for the queue is put back to wait."""
        message = refused_for_queue(batch)
        if message is None:
            return part.update(batch)
        self.queue.refused(part, message)
        return True

    async def _poll(self) -> None:
        changed = False
        for part in self.ledger.in_flight:
            assert part.batch_id is not None
            changed |= self._update(part, await self.api.retrieve(part.batch_id))
        if changed:
            await anyio.to_thread.run_sync(self.ledger.save)
            log.info("%s", self._progress())

    async def _collect(self) -> None:
        ledger = self.ledger
        for part in ledger.parts:
            if not part.ended or part.collected:
                continue
            for file_id, path in ((part.output_file_id, answers.output_file(ledger.dir, part)),
                                  (part.error_file_id, answers.error_file(ledger.dir, part))):
                if file_id is not None:
                    await self.api.download(file_id, path)
            await anyio.to_thread.run_sync(answers.order, ledger.dir, part, self.api.scrubber)
            part.collected = True
            await anyio.to_thread.run_sync(ledger.save)
            for path in (answers.output_file(ledger.dir, part), answers.error_file(ledger.dir, part)):
                path.unlink(missing_ok=True)

    async def _move_online(self) -> None:
        """The deadline passed: cancel what is running; what it did not answer goes online."""
        self.online = True
        await self._cancel(self.ledger.in_flight, "the deadline passed: cancelling")

    async def _cancel(self, parts: list[Part], why: str) -> None:
        if parts:
            log.warning("%s %s", why, counted(len(parts), "batch", "batches"))
        for part in parts:
            assert part.batch_id is not None
            try:
                batch = await self.api.cancel(part.batch_id)
            except FatalEndpointError:  # refused: it may have ended meanwhile, which is as good
                batch = await self.api.retrieve(part.batch_id)
                if batch.get("status") not in ENDED:
                    raise
            part.update(batch)
        await anyio.to_thread.run_sync(self.ledger.save)

    def _cancel_unsubmitted(self) -> None:
        """Batches never submitted end here too: their lines are written as cancelled."""
        for part in self.ledger.parts:
            if part.batch_id is None:
                part.status = "cancelled"
        self.ledger.save()

    async def _wait(self) -> None:
        """Until the next status check: doubling from `FIRST_POLL` to the poll interval, never past the deadline."""
        self._poll_wait = min(self._poll_wait * 2, self.options.poll_interval)
        wait = self._poll_wait
        if not self.online and (deadline := self.deadline) is not None:
            wait = max(0.0, min(wait, deadline - self.wall()))
        await self.clock.sleep(wait)

    def _progress(self) -> str:
        parts = self.ledger.parts
        done = sum(part.counts.get("completed", 0) for part in parts)
        failed = sum(part.counts.get("failed", 0) for part in parts)
        lines = sum(part.lines for part in parts)
        states = ", ".join(f"{count} {status}" for status, count in
                           sorted(Counter(part.status or "not submitted" for part in parts).items()))
        failures = f" ({failed:,} failed)" if failed else ""
        return f"batches: {states}; {done:,} of {lines:,} requests answered{failures}"

    def _detached(self) -> str:
        return (f"{self._progress()}. They go on at the provider (within 24 h): run the same command again to "
                "collect the results (without --detach it waits for them), or add --cancel to cancel them")
