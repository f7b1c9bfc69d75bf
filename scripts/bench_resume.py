"""How long a resume takes to skip lines an earlier start already finished.

    python scripts/bench_resume.py [--lines 1000000] [--left 1000]

Builds a checkpoint in which all but ``--left`` lines are finished (a run over an in-process
endpoint that answers at once, interrupted near the end), then times the resume: reading the
checkpoint back (ordered prefix, journal) and the input up to the unfinished lines, and
finishing them. The figures are the resume's wall time, and the longest the event loop went
without running a task (signals and the periodic fsync wait on it): a probe task asks to wake
every millisecond and records how late it woke. The first run's time is shown for scale.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio
import orjson
from multidict import CIMultiDict

import batchrun
from batchrun.records import Result
from batchrun.runner import run_async
from batchrun.stats import RunStats
from batchrun.transport import Reply, Timeouts

ANSWER = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "A short answer."},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}})


class Instant:
    """An endpoint in the same process that answers every request at once."""

    async def post(self, url: str, headers: object, body: bytes, timeouts: Timeouts) -> Reply:
        return Reply(200, CIMultiDict({"x-request-id": "req_1"}), ANSWER)

    async def aclose(self) -> None:
        pass


class StopAt:
    def __init__(self, n: int, scope: anyio.CancelScope) -> None:
        self.n, self.scope = n, scope
        self.started_at = 0.0

    def started(self, stats: RunStats) -> None:
        self.started_at = time.perf_counter()

    def written(self, result: Result, stats: RunStats) -> None:
        if stats.written >= self.n:
            self.scope.cancel()

    def retrying(self, *args: object) -> None:
        pass


class LoopProbe:
    """How long the event loop went, at most, without letting a task run."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def run(self) -> None:
        while True:
            asked = time.perf_counter()
            await anyio.sleep(0.001)
            self.longest = max(self.longest, time.perf_counter() - asked - 0.001)


async def resume(config: batchrun.RunConfig, probe: LoopProbe) -> RunStats:
    async with anyio.create_task_group() as tg:
        tg.start_soon(probe.run)
        stats = await batchrun.run_batch(config, transport=Instant())
        tg.cancel_scope.cancel()
    return stats


async def interrupted(config: batchrun.RunConfig, stop_at: int) -> None:
    with anyio.CancelScope() as scope:
        await batchrun.run_batch(config, transport=Instant(), observer=StopAt(stop_at, scope))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--left", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        with source.open("wb") as f:
            for i in range(args.lines):
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Label item {i}."}]}
                f.write(orjson.dumps({"custom_id": f"item-{i}", "body": body}) + b"\n")
        config = batchrun.RunConfig(source, base_url="http://127.0.0.1:9/v1", concurrency=64)
        began = time.perf_counter()
        run_async(interrupted, config, args.lines - args.left)
        first = time.perf_counter() - began
        began = time.perf_counter()
        probe = LoopProbe()
        stats = run_async(resume, config, probe)
        took = time.perf_counter() - began
        assert stats.exit_code == 0 and stats.written == args.lines, stats
        print(f"first run, interrupted after {args.lines - args.left:,} lines: {first:.1f} s")
        print(f"resume: {stats.carried_over:,} finished lines carried over and {args.lines - stats.carried_over:,} "
              f"sent in {took:.1f} s ({took / args.lines * 1e6:.1f} µs per line); the event loop went at most "
              f"{probe.longest * 1000:.0f} ms without running a task")


if __name__ == "__main__":
    main()
