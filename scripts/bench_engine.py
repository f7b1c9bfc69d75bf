"""Batchrun's own CPU per line through the whole engine — reading, the pool, the client, pacing,
the ordered writer, the report — with the endpoint an object in the same process: what
``scripts/bench.py`` measures, less the HTTP stack and the simulator, so a change to the
per-line path shows in a few seconds and with little noise.

    python scripts/bench_engine.py [--lines 50000] [--concurrency 256] [--repeat 3] [--latency-ms 0,200]

``--latency-ms L``: the endpoint answers each request L ms after it was sent, as the simulator
does, so that answers come back in the order they were sent but spread out, one or two per
event-loop turn once the requests' start times have spread (as they do against a real server);
0 answers each at the next turn, all the requests in flight together. Each batchrun run is timed beside a bare
loop (``--concurrency`` workers on an anyio memory stream, the same answers after the same
waits, the input parsed and each answer parsed, nothing else), taking turns: the bare loop's
CPU is the floor that both share, and batchrun's own work is the difference. Figures are CPU
µs per line (``time.process_time``), the median and the range over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import orjson
from bench import write_input
from bench_client import ANSWER, Instant

import batchrun
from batchrun.runner import run_async
from batchrun.transport import Reply, Timeouts


def waiting(latency_s: float) -> Callable[[], Awaitable[object]]:
    """The endpoint's wait before each answer: ``latency_s``, or the next turn."""
    if latency_s:
        return lambda: anyio.sleep(latency_s)
    return anyio.lowlevel.checkpoint


class InProcess(Instant):
    """`bench_client`'s endpoint in the same process, answering every request 200 after ``wait()``."""

    def __init__(self, wait: Callable[[], Awaitable[object]]) -> None:
        super().__init__(fail_first=False)
        self._wait = wait

    async def post(self, url: str, headers: object, body: bytes, timeouts: Timeouts) -> Reply:
        await self._wait()
        return await super().post(url, headers, body, timeouts)


def run_batchrun(source: Path, out: Path, concurrency: int, wait: Callable[[], Awaitable[object]]) -> None:
    config = batchrun.RunConfig(source, output_path=out, base_url="http://127.0.0.1:9/v1", concurrency=concurrency)
    stats = run_async(lambda: batchrun.run_batch(config, transport=InProcess(wait)))
    if stats.exit_code != 0 or stats.succeeded != stats.written:
        raise SystemExit(f"batchrun's run failed: exit {stats.exit_code}, {stats.succeeded} of {stats.written} succeeded")


async def bare_loop(source: Path, concurrency: int, wait: Callable[[], Awaitable[object]]) -> int:
    send, receive = anyio.create_memory_object_stream[bytes](concurrency)
    answered = 0

    async def worker(bodies: anyio.abc.ObjectReceiveStream[bytes]) -> None:
        nonlocal answered
        async with bodies:
            async for _body in bodies:
                await wait()
                answered += "choices" in orjson.loads(ANSWER)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker, receive.clone())
        receive.close()
        async with send:
            with source.open("rb") as lines:
                for line in lines:
                    await send.send(orjson.dumps(orjson.loads(line)["body"]))
    return answered


def cpu_per_line(work: Callable[[], object], lines: int) -> float:
    start = time.process_time()
    work()
    return (time.process_time() - start) / lines * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=lambda text: [float(part) for part in text.split(",")], default=[0.0, 200.0])
    args = parser.parse_args()
    print("| latency | batchrun µs/line | bare loop µs/line | batchrun's own µs/line |")
    print("|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        write_input(source, args.lines)
        for latency_ms in args.latency_ms:
            ours, bare = measure(source, Path(tmp), args.lines, args.concurrency, args.repeat, latency_ms)
            own = [a - b for a, b in zip(ours, bare, strict=True)]
            print(f"| {latency_ms:g} ms | {_figure(ours)} | {_figure(bare)} | {_figure(own)} |")


def measure(source: Path, tmp: Path, lines: int, concurrency: int, repeat: int,
            latency_ms: float) -> tuple[list[float], list[float]]:
    """CPU µs per line of batchrun and of the bare loop, ``repeat`` times each, taking turns."""
    wait = waiting(latency_ms / 1000)
    ours, bare = [], []

    def floor() -> None:
        if run_async(lambda: bare_loop(source, concurrency, wait)) != lines:
            raise SystemExit("the bare loop lost answers")

    for turn in range(repeat):
        out = tmp / f"out-{latency_ms:g}-{turn}.jsonl"
        ours.append(cpu_per_line(lambda: run_batchrun(source, out, concurrency, wait), lines))  # noqa: B023 -- called here
        bare.append(cpu_per_line(floor, lines))
    return ours, bare


def _figure(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


if __name__ == "__main__":
    main()
