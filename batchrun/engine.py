"""The run: one task group owning a reader, a fixed pool of workers and the ordered writer.

    reader ──jobs (bounded)──▶ N workers ──results (bounded)──▶ writer ──▶ output files
       ▲                                                           │
       └────────────── window: a slot per line, released on write ─┘

No task per line and no unbounded buffer: the job and result streams hold ``concurrency``
items each, and the window lets the reader run at most ``window`` lines ahead of the oldest
line not yet written, so a slow request at the head stalls dispatch instead of growing memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import anyio
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .client import Client
from .config import RunConfig
from .errors import FatalEndpointError, RequestError
from .reader import open_input, read_jobs
from .records import Job, LineError, Result
from .retry import Sleep
from .stats import RunStats
from .transport import Transport
from .writer import OrderedWriter

log = logging.getLogger("batchrun")
T = TypeVar("T")


class Observer(Protocol):
    """Hooks for a progress display; called from the event loop, so they must be quick."""

    def started(self, stats: RunStats) -> None: ...

    def written(self, result: Result, stats: RunStats) -> None: ...

    def retrying(self, job: Job, error: RequestError, wait: float) -> None: ...


async def run_batch(
    config: RunConfig,
    *,
    transport: Transport | httpx.AsyncBaseTransport | None = None,
    observer: Observer | None = None,
    sleep: Sleep = anyio.sleep,
) -> RunStats:
    """Run every line of ``config.input_path`` and write the ordered output.

    Failed requests are error records in the output, not exceptions; the returned stats say
    what happened and `RunStats.exit_code` maps it to SPEC §5.

    :param transport: how to reach the endpoint (default `AiohttpTransport`); an
        ``httpx.AsyncBaseTransport`` such as ``httpx.MockTransport`` is accepted too.
    :raises InputFileError: the input cannot be opened (nothing was sent).
    :raises ConfigError: the output files cannot be created (nothing was sent).
    """
    open_input(config.input_path).close()
    stats = RunStats(config.out, config.errors_path)
    stats.total_hint = await anyio.to_thread.run_sync(count_lines, config)
    writer = OrderedWriter(config.out, config.errors_path)
    if observer is not None:
        observer.started(stats)

    def on_retry(job: Job, error: RequestError, wait: float) -> None:
        stats.record_retry(error)
        log.debug("%s (line %d): %s; retrying in %.2f s", job.custom_id, job.line_no, error.code, wait)
        if observer is not None:
            observer.retrying(job, error, wait)

    try:
        async with Client(config, transport=transport, sleep=sleep, on_retry=on_retry) as client:
            await _run_pool(config, client, writer, stats, observer)
    except BaseException:
        writer.close()
        raise
    finally:
        stats.finished = time.monotonic()
    if stats.aborted is None:
        writer.commit()
    else:
        writer.close()
    return stats


async def _run_pool(config: RunConfig, client: Client, writer: OrderedWriter, stats: RunStats,
                    observer: Observer | None) -> None:
    window = anyio.Semaphore(config.window or config.concurrency)
    job_send, job_recv = anyio.create_memory_object_stream[Job](config.concurrency)
    result_send, result_recv = anyio.create_memory_object_stream[Result](config.concurrency)
    async with anyio.create_task_group() as tg:

        def abort(reason: str) -> None:
            if stats.aborted is None:
                stats.aborted = reason
                log.error("stopping: %s", reason)
            tg.cancel_scope.cancel()

        tg.start_soon(_guarded, _feed, abort, read_jobs(config.input_path), job_send, result_send.clone(), window)
        for _ in range(config.concurrency):
            tg.start_soon(_guarded, _work, abort, client, job_recv.clone(), result_send.clone())
        job_recv.close()
        result_send.close()
        tg.start_soon(_guarded, _write, abort, result_recv, writer, window, stats, observer)


async def _guarded(task: Callable[..., object], abort: Callable[[str], None], *args: object) -> None:
    """Run a pool task; a condition that dooms the whole run stops it with a reason."""
    try:
        await task(*args)  # type: ignore[misc]
    except FatalEndpointError as exc:
        abort(str(exc))
    except OSError as exc:
        abort(f"I/O error: {exc}")


async def _feed(items: Iterator[Job | LineError], jobs: MemoryObjectSendStream[Job],
                results: MemoryObjectSendStream[Result], window: anyio.Semaphore) -> None:
    async with jobs, results:
        for item in items:
            try:
                window.acquire_nowait()
            except anyio.WouldBlock:
                await window.acquire()
            if isinstance(item, Job):
                await _send(jobs, item)
            else:
                log.warning("%s", item.message)
                await _send(results, Result.from_line_error(item))


async def _work(client: Client, jobs: MemoryObjectReceiveStream[Job],
                results: MemoryObjectSendStream[Result]) -> None:
    async with jobs, results:
        while True:
            try:
                job = await _receive(jobs)
            except anyio.EndOfStream:
                return
            await _send(results, await client.send(job))


async def _write(results: MemoryObjectReceiveStream[Result], writer: OrderedWriter, window: anyio.Semaphore,
                 stats: RunStats, observer: Observer | None) -> None:
    async with results:
        while True:
            try:
                result = await _receive(results)
            except anyio.EndOfStream:
                return
            for done in writer.add(result):
                window.release()
                stats.record(done)
                if observer is not None:
                    observer.written(done, stats)
            stats.max_buffered = max(stats.max_buffered, writer.buffered)


# The blocking paths of memory object streams cost ~40 µs per item (PERF-NOTES); when the
# stream can act at once, these skip that scheduling round trip.


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


def count_lines(config: RunConfig) -> int:
    """Newlines in the input (an upper bound on its request lines), for progress; fast, not exact."""
    count = 0
    last = b"\n"
    with config.input_path.open("rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")
