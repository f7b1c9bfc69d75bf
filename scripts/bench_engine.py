"""Batchrun's own CPU per line through the whole engine — reading, the pool, the client, pacing,
the ordered writer, the report — with the endpoint an object in the same process: what
``scripts/bench.py`` measures, less the HTTP stack and the simulator, so a change to the
per-line path shows in a few seconds and with little noise.

    python scripts/bench_engine.py [--lines 50000] [--concurrency 256] [--repeat 3] [--latency-ms 0,200]
                                   [--spread] [--tick-ms T]

``--latency-ms L``: the endpoint answers each request L ms after it was sent, as the simulator
does, so that answers come back in the order they were sent but spread out, one or two per
event-loop turn once the requests' start times have spread (as they do against a real server);
0 answers each at the next turn, all the requests in flight together. Each batchrun run is timed beside a bare
loop (``--concurrency`` workers on an anyio memory stream, the same answers after the same
waits, the input parsed and each answer parsed, nothing else), taking turns: the bare loop's
CPU is the floor that both share, and batchrun's own work is the difference. Figures are CPU
µs per line (``time.process_time``), the median and the range over the repeats.

Two settings show how the cost depends on when answers come rather than on the code:
``--spread`` starts the bare loop's workers one after another across the first latency, so
that its answers come back spread out as batchrun's do (without it, they stay in the bunch
they were sent in, and a few hundred wake-ups serve the whole run); ``--tick-ms T`` makes the
endpoint hold each answer until the next multiple of T ms, so that they come in groups.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import anyio
import orjson
from bench import write_input
from bench_client import ANSWER, Instant

import batchrun
from batchrun.runner import run_async
from batchrun.transport import Reply, Timeouts


def waiting(latency_s: float, tick_s: float = 0.0) -> Callable[[], Awaitable[object]]:
    """The endpoint's wait before each answer: ``latency_s``, or the next turn; then, with
    ``tick_s``, on to the next multiple of ``tick_s`` on the event loop's clock."""
    if tick_s:
        async def ticked() -> None:
            now = anyio.current_time()
            due = now + latency_s
            await anyio.sleep(due + tick_s - due % tick_s - now)

        return ticked
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


async def bare_loop(source: Path, concurrency: int, wait: Callable[[], Awaitable[object]], spread_s: float = 0.0) -> int:
    """:param spread_s: worker k starts ``k / concurrency`` of this late (``--spread``)."""
    send, receive = anyio.create_memory_object_stream[bytes](concurrency)
    answered = 0

    async def worker(k: int, bodies: anyio.abc.ObjectReceiveStream[bytes]) -> None:
        nonlocal answered
        if spread_s:
            await anyio.sleep(k * spread_s / concurrency)
        async with bodies:
            async for _body in bodies:
                await wait()
                answered += "choices" in orjson.loads(ANSWER)

    async with anyio.create_task_group() as tg:
        for k in range(concurrency):
            tg.start_soon(worker, k, receive.clone())
        receive.close()
        async with send:
            with source.open("rb") as lines:
                for line in lines:
                    await send.send(orjson.dumps(orjson.loads(line)["body"]))
    return answered


class Cost(NamedTuple):
    cpu_us: float  # CPU µs per line
    waits: int  # times the process waited for the event loop to have work (voluntary switches)


def cost(work: Callable[[], object], lines: int) -> Cost:
    start, before = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    work()
    return Cost((time.process_time() - start) / lines * 1e6, resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=lambda text: [float(part) for part in text.split(",")], default=[0.0, 200.0])
    parser.add_argument("--spread", action="store_true", help="the bare loop's workers start spread over a latency")
    parser.add_argument("--tick-ms", type=float, default=0.0, help="answers held until the next multiple of this")
    args = parser.parse_args()
    print("| latency | batchrun µs/line | bare loop µs/line | batchrun's own µs/line | waits for work, batchrun / loop |")
    print("|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        write_input(source, args.lines)
        for latency_ms in args.latency_ms:
            wait = waiting(latency_ms / 1000, args.tick_ms / 1000)
            spread_s = latency_ms / 1000 if args.spread else 0.0
            ours, bare = measure(source, Path(tmp) / f"{latency_ms:g}", args.lines, args.concurrency, args.repeat,
                                 wait, spread_s)
            own = [a.cpu_us - b.cpu_us for a, b in zip(ours, bare, strict=True)]
            waits = f"{statistics.median(c.waits for c in ours):,.0f} / {statistics.median(c.waits for c in bare):,.0f}"
            print(f"| {latency_ms:g} ms | {_figure([c.cpu_us for c in ours])} | {_figure([c.cpu_us for c in bare])} | "
                  f"{_figure(own)} | {waits} |")


def measure(source: Path, prefix: Path, lines: int, concurrency: int, repeat: int,
            wait: Callable[[], Awaitable[object]], spread_s: float) -> tuple[list[Cost], list[Cost]]:
    """The cost of batchrun and of the bare loop, ``repeat`` times each, taking turns."""
    ours, bare = [], []

    def floor() -> None:
        if run_async(lambda: bare_loop(source, concurrency, wait, spread_s)) != lines:
            raise SystemExit("the bare loop lost answers")

    for turn in range(repeat):
        out = prefix.with_name(f"{prefix.name}-{turn}.jsonl")
        ours.append(cost(lambda: run_batchrun(source, out, concurrency, wait), lines))  # noqa: B023 -- called here
        bare.append(cost(floor, lines))
    return ours, bare


def _figure(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


if __name__ == "__main__":
    main()
