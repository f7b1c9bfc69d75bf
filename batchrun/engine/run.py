"""A run's lifecycle: open the checkpoint, count what was spent, run the pool, publish or save.

    checkpoint.open ─▶ recover ─▶ spend carried (usage + ledger) ─▶ pool (sources, online)
          │                                                              │
          └── up to date / published: nothing to send                   ▼
                                    every line written: publish   ·   stopped: save, report

A run resumes from its checkpoint (`disk/checkpoint.py`): lines finished by earlier starts are
carried over, never sent again, and what earlier starts spent — the usage of those lines, and
the lost answers the spend ledger kept (`accounting/ledger.py`) — counts against ``--max-cost``.
Stopping (a signal, the budget, an abort) closes the door on new requests and lets those on
the wire finish, within a grace period; lines waiting to be sent (their backoff, their pace)
are not sent, and the next start does them. Every start writes its report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .. import smoke
from ..accounting.budget import Budget
from ..accounting.ledger import SpendLedger, worst_case
from ..accounting.pricing import PriceTable, load_prices
from ..accounting.report import Report
from ..accounting.spending import BudgetGate
from ..batchapi.answers import Answers
from ..batchapi.ledger import Ledger
from ..cache.source import ResponseCache, open_cache
from ..client import Client
from ..config import RunConfig
from ..disk.checkpoint import Checkpoint, Opened
from ..disk.identity import InputScan, identity, scan_input
from ..disk.publish import write_atomically
from ..disk.resume import Carryover
from ..disk.runfiles import checked
from ..disk.snapshot import Snapshot
from ..disk.writer import OrderedWriter
from ..errors import ConfigError
from ..pacing import SYSTEM_CLOCK, Clock
from ..plural import counted
from ..reader import Position, open_input, read_jobs
from ..records import Job, Result
from ..skip import skip_in_steps
from ..stats import EXIT_BUDGET, EXIT_STOPPED, RunStats
from ..tiers import Tiering
from ..transport import Transport
from .carry import carried, carried_ledger
from .control import BAD_LINE_WARNINGS, Control
from .document import report_json, run_facts
from .pool import KeepingSink, Observer, Pool, Sink, retry_hook, send_hook
from .sources import Source

if TYPE_CHECKING:
    import httpx

    from ..scale.budget import ShardBudget

log = logging.getLogger("batchrun")

SYNC_INTERVAL = 1.0  # seconds between fsyncs: what a power loss can take at most


async def run_batch(
    config: RunConfig,
    *,
    transport: Transport | httpx.AsyncBaseTransport | None = None,
    observer: Observer | None = None,
    clock: Clock = SYSTEM_CLOCK,
    handle_signals: bool = False,
    sources: Sequence[Source] = (),
    via: str | None = None,
    shared: ShardBudget | None = None,
    cache: ResponseCache | None = None,
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
    :param sources: where lines are answered before they are sent online, asked in order
        after the lines earlier starts finished (`sources.py`): the Batch API's answers, say.
    :param via: the route the run goes by besides online (``"batch"``: `run_via_batch`), in its
        identity (`identity.identity`): a checkpoint or output of one route is not another's.
    :param shared: this shard's side of the rate limits and ``--max-cost`` cap shared by the
        shards of one run (`batchrun.scale.budget`).
    :param cache: the response cache, asked after the lines earlier starts finished and before
        ``sources``, and given every answer written; by default the one ``config.cache`` names,
        opened and closed here (a caller that opens it closes it).
    :raises InputFileError: the input cannot be opened (nothing was sent).
    :raises ConfigError: the output cannot be written, another run holds it, its checkpoint
        belongs to another input or options, or batches of it are at the provider and no
        source collects them (nothing was sent).
    """
    config = checked(config)
    open_input(config.input_path).close()
    _refuse_batches_beside(config, sources)
    prices = load_prices(config.prices_path, batch_discount=config.batch_discount)
    span = config.span
    scan = await anyio.to_thread.run_sync(scan_input, config.input_path, (span.start, span.end) if span else None)
    limit = span.end if span is not None else scan.size
    budget = await _budget(config, prices, limit, shared)
    checkpoint = Checkpoint(config, via)
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
        # Of the finished lines, only the ids a line left may repeat go into the duplicate table.
        # Lines the prefix refused as invalid are read as a fresh start reads them (`skip_in_steps`).
        valid = not stats.report.by_code["invalid_request_line"]
        position = await _skip(config.input_path, recovered.prefix, limit, _origin(config), valid,
                               scan.lines - recovered.prefix)
        writer = OrderedWriter(*checkpoint.open_files(), next_index=checkpoint.first_index + recovered.prefix,
                               sizes=recovered.sizes,
                               last_custom_id=recovered.last_custom_id, run_id=checkpoint.run_id)
        ledger = SpendLedger(prices, carried=await anyio.to_thread.run_sync(carried_ledger, config, checkpoint))
    except BaseException:
        checkpoint.close()
        raise
    stats.ledger = ledger
    carryover = Carryover(recovered, retry_failed=config.retry_failed)
    gate = None
    if budget is not None:
        budget.carry(await anyio.to_thread.run_sync(carried, stats, recovered, checkpoint, prices, ledger.carried))
        stats.budget, gate = budget, BudgetGate(budget)
    if recovered.prefix or recovered.finished:
        log.info("resuming: earlier starts finished %s of the lines (succeeded or failed); the report at the end "
                 "counts them too", f"{stats.written + len(recovered.finished or {}):,}")
    if observer is not None:
        observer.started(stats)
    control = Control(stats, config.drain_timeout)
    pool: Pool | None = None
    own_cache = cache is None and config.cache is not None
    if own_cache:
        cache = await anyio.to_thread.run_sync(open_cache, config)
    window = anyio.Semaphore(config.window or config.concurrency)
    sink = Sink(writer, window, config.window_bytes, stats, observer) if cache is None else \
        KeepingSink(writer, window, config.window_bytes, stats, observer, keep=cache.keep)
    try:
        async with (shared.running() if shared is not None else contextlib.nullcontext()),\
                Client(config, transport=transport, clock=clock, on_retry=retry_hook(observer, control),
                       before_send=send_hook(sink, control), share=shared) as client:
            stats.pacer, control.wire = client.pacer, client.pacer.slots
            items = smoke.first_lines(read_jobs(config.input_path, limit, start=position, model=config.model,
                                                duplicates=span.duplicates if span is not None else frozenset()),
                                      config.limit, recovered.prefix)
            asked: list[Source] = [carryover, *sources] if cache is None else [carryover, cache, *sources]
            tiering = Tiering(config.tier, prices) if config.tier is not None else None
            pool = Pool(config, client, asked, gate, ledger, sink, control, tiering)

            async def periodic() -> None:
                await _sync_periodically(sink, writer, checkpoint, ledger, control)

            await pool.run(items, window, periodic, handle_signals)
    except KeyboardInterrupt:
        # Past the pool SIGINT is Python's own again; only closing the connections was left.
        if not handle_signals:
            raise
    finally:
        # The answers the pool put last, however it ended, in the files and counted. A failure is
        # kept by the writer: closing it fails, and says so (`_close_writer`).
        with contextlib.suppress(OSError):
            sink.commit()
        stats.finished = time.monotonic()
        if budget is not None and budget.refused is not None and stats.stop_code == EXIT_BUDGET:
            stats.stop_reason = budget.describe_stop(budget.refused)  # with what the requests in flight cost
        carryover.close()
        if own_cache and cache is not None:
            with anyio.CancelScope(shield=True):  # what is queued is written, whatever stopped the run
                await anyio.to_thread.run_sync(cache.close)
        if pool is not None:
            _charge_unsettled(pool.unsettled(), gate, ledger, prices)
        every_line = control.fed_all and writer.next_index == checkpoint.first_index + carryover.prefix + control.fed
        if every_line and (cut := smoke.cut_at(config.limit, scan.lines)) is not None:  # kept, not published
            every_line = False
            smoke.stop(stats, cut, scan.lines, checkpoint.output)
        facts = _facts(config, scan, writer.next_index - checkpoint.first_index + writer.buffered + carryover.left, via)
        try:
            saved = _close_writer(writer, stats)
            if saved:
                _save_snapshot(checkpoint, writer, ledger, stats)
            if saved and every_line:
                _commit(config, checkpoint, stats, facts, writer.sizes[0])
            else:
                checkpoint.close()
                save_report(config, checkpoint, stats, facts)
        except KeyboardInterrupt:
            if not handle_signals:
                raise
            # Every step here is one a crash may stop: the next start completes it, sending nothing.
            checkpoint.close()
            if every_line:
                stats.stop_reason = (f"interrupted while publishing the output: all {counted(stats.written, 'line')} are "
                                     "answered and kept in the checkpoint; the next start publishes them and sends "
                                     "none again")
            stats.stop_reason = stats.stop_reason or "interrupted while saving the checkpoint"
            stats.stop_code = EXIT_STOPPED
            save_report(config, checkpoint, stats, facts)
    if control.bad_lines > BAD_LINE_WARNINGS:
        errors = config.errors_path if stats.stop_reason is None else checkpoint.errors
        log.warning("… and %s more bad input lines: see %s", f"{control.bad_lines - BAD_LINE_WARNINGS:,}", errors)
    return stats


def _refuse_batches_beside(config: RunConfig, sources: Sequence[Source]) -> None:
    """Lines at the provider in batches of this output are paid for there: a start that does
    not collect them must not send them again online.

    :raises ConfigError: a batches folder with a plan is beside the output, and no source collects it.
    """
    if any(isinstance(source, Answers) for source in sources):
        return
    ledger = Ledger.load(config.batches_path)
    if ledger is None:
        return
    waiting = len(ledger.in_flight)
    where = f"{counted(waiting, 'batch', 'batches')} of this output at the provider" if waiting else \
        "the batches of this output are not written yet"
    raise ConfigError(f"{where} ({config.batches_path}): run the same command with --via batch to collect them, or "
                      "with --via batch --cancel to cancel them; sending their lines online would pay for them twice. "
                      "Nothing was sent")


def _count_published(out: Path, stats: RunStats) -> None:
    """Count a published output into ``stats``, as a resume counts the lines it carries over."""
    with out.open("rb") as f:
        for index, line in enumerate(f):
            stats.record(Result.from_line(index, line))


def _charge_unsettled(jobs: list[Job], gate: BudgetGate | None, ledger: SpendLedger, prices: PriceTable) -> None:
    """Lines cancelled on the wire (the end of a drain) may have been billed: the ledger keeps
    their worst case for the next start's cap."""
    for job in jobs:
        worst = gate.reservation(job) if gate is not None else None
        if worst is None and (price := prices.price(job.model)) is not None:
            worst = worst_case(job, price)
        ledger.add(worst or 0.0)


def _origin(config: RunConfig) -> Position | None:
    """Where a span's lines start, numbered as the whole input numbers them."""
    span = config.span
    return None if span is None else Position(span.start, span.first_line, span.first_index)


async def _skip(path: Path, count: int, limit: int, origin: Position | None, valid: bool, after: int) -> Position:
    """Read past the finished prefix for its ids, letting the loop run between steps (signals,
    the fsync of a previous start's files) and nothing else: there is nothing else to do yet."""
    steps = skip_in_steps(path, count, limit, origin, valid=valid, after=after)
    with contextlib.closing(steps):
        position = next(steps)
        for position in steps:  # noqa: B007 -- the last one is the answer
            await anyio.lowlevel.checkpoint()
    return position


async def _sync_periodically(sink: Sink, writer: OrderedWriter, checkpoint: Checkpoint, ledger: SpendLedger,
                             control: Control) -> None:
    """Bound what a power loss can take, and what a resume must read back (`disk/snapshot.py`); a
    disk that fails here stops the run, resumable."""
    try:
        while True:
            await anyio.sleep(SYNC_INTERVAL)
            sink.flush()
            prefix = _snapshot(writer, checkpoint, control.stats)  # what the bytes about to be fsynced hold
            spend = ledger.encode()
            # Not cancellable mid-way: the files are closed only after this returns.
            await anyio.to_thread.run_sync(_fsync_all, writer.fsync_targets())
            await anyio.to_thread.run_sync(checkpoint.save_snapshot, prefix)
            await anyio.to_thread.run_sync(checkpoint.save_spend, spend)
    except OSError as exc:
        control.abort(f"I/O error while saving to disk: {exc}", disk=True)


def _snapshot(writer: OrderedWriter, checkpoint: Checkpoint, stats: RunStats) -> Snapshot:
    output_bytes, errors_bytes = writer.sizes
    return Snapshot(writer.next_index - checkpoint.first_index, output_bytes, errors_bytes, writer.last_custom_id,
                    stats.report.state())


def _save_snapshot(checkpoint: Checkpoint, writer: OrderedWriter, ledger: SpendLedger, stats: RunStats) -> None:
    """After the files are closed (and fsynced): the next start reads back none of the prefix,
    and starts from what this one spent."""
    try:
        checkpoint.save_spend(ledger.encode())
    except OSError as exc:
        log.warning("could not save %s: %s", checkpoint.spend, exc)
    try:
        checkpoint.save_snapshot(_snapshot(writer, checkpoint, stats))
    except OSError as exc:  # only a resume's speed depends on it
        log.warning("could not save %s: %s", checkpoint.snapshot, exc)


async def _budget(config: RunConfig, prices: PriceTable, size: int, shared: ShardBudget | None) -> Budget | None:
    """The spending cap, checked before anything else happens.

    :raises ConfigError: a model in the input has no price, so the cap could not be enforced.
    """
    if config.max_cost is None:
        return None
    models = await anyio.to_thread.run_sync(_models_in, config, size)
    # A line on flex is reserved at flex's price unless it may still go at the standard tier.
    return Budget(config.max_cost, prices, models, pool=shared,
                  flex_reserved=config.tier is not None and config.tier_fallback is None)


def _models_in(config: RunConfig, size: int) -> set[str | None]:
    items = read_jobs(config.input_path, size, start=_origin(config), model=config.model)
    return {item.model for item in items if isinstance(item, Job)}


def _facts(config: RunConfig, scan: InputScan, lines_finished: int, via: str | None) -> dict[str, Any]:
    return run_facts(input_path=str(config.input_path), same_run=identity(scan, config, via), input_lines=scan.lines,
                     lines_finished=lines_finished, max_cost=config.max_cost)


def _is_part(config: RunConfig) -> bool:
    """A span's run: its report keeps the raw counters, for the parts to add up exactly (`scale.parts`)."""
    return config.span is not None


def save_report(config: RunConfig, checkpoint: Checkpoint, stats: RunStats, facts: dict[str, Any]) -> None:
    """The report of a run that stopped before publishing, as JSON beside the output, written
    whole or not at all. What it counts is the ordered output in the checkpoint."""
    stats.report.source = str(checkpoint.output if checkpoint.output.exists() else config.out)
    try:
        write_atomically(config.report_path, report_json(stats, facts, counters=_is_part(config)))
    except OSError as exc:
        log.warning("could not write the report %s: %s", config.report_path, exc)


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
    report = report_json(stats, facts, output_bytes, counters=_is_part(config))
    try:
        checkpoint.commit(report)
    except OSError as exc:
        stats.stop_reason, stats.stop_code = f"I/O error while publishing the output: {exc}", EXIT_STOPPED
        if checkpoint.report.exists():  # until the next start publishes it; one published already stays
            save_report(config, checkpoint, stats, facts)
