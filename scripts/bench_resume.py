"""How long a resume takes to skip lines an earlier start already finished.

    python scripts/bench_resume.py [--lines 1000000] [--left 1000] [--keep DIR] [--rev REV] [--repeat 1]

Builds a checkpoint in which all but ``--left`` lines are finished (a run over an in-process
endpoint that answers at once, interrupted near the end), then times the resume: reading the
checkpoint back (ordered prefix, journal) and the input up to the unfinished lines, and
finishing them. The figures are the resume's wall time, and the longest the event loop went
without running a task (signals and the periodic fsync wait on it): a probe task asks to wake
every millisecond and records how late it woke. The first run's time is shown for scale.

Each resume runs in a process of its own, on a copy of the built checkpoint, importing a copy
of the work tree's batchrun/ taken at the start (edits while it runs change nothing), and with
``--rev`` (repeatable) also a revision's (``git archive``), one after the other in each of
``--repeat`` rounds, so that their times are side by side on the same machine load.
``--keep DIR`` builds the checkpoint in DIR, or reuses the one built there for the same
``--lines`` and ``--left``: the first run takes a minute or more, each resume seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
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

REPO = Path(__file__).resolve().parent.parent
WORK_TREE = "work tree"
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


def run_config(source: Path, out: Path) -> batchrun.RunConfig:
    return batchrun.RunConfig(source, output_path=out, base_url="http://127.0.0.1:9/v1", concurrency=64)


def build(folder: Path, lines: int, left: int) -> float | None:
    """Make ``folder``'s input and the checkpoint of its interrupted run (``out.jsonl``), unless
    it holds them for these ``lines`` and ``left`` already; the first run's seconds (``None``: reused)."""
    marker, wanted = folder / "built.json", {"lines": lines, "left": left}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return None
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    source = folder / "in.jsonl"
    with source.open("wb") as f:
        for i in range(lines):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Label item {i}."}]}
            f.write(orjson.dumps({"custom_id": f"item-{i}", "body": body}) + b"\n")
    began = time.perf_counter()
    run_async(interrupted, run_config(source, folder / "out.jsonl"), lines - left)
    first = time.perf_counter() - began
    marker.write_text(json.dumps(wanted))
    return first


def code(rev: str, into: Path) -> Path:
    """A copy of ``rev``'s batchrun/ (`WORK_TREE`: the work tree's as it is now) under ``into``:
    the folder to put first on PYTHONPATH."""
    into.mkdir(parents=True)
    if rev == WORK_TREE:
        shutil.copytree(REPO / "batchrun", into / "batchrun", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = subprocess.run(["git", "archive", rev, "batchrun"], cwd=REPO, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def time_resume(built: Path, code_path: Path, scratch: Path) -> dict[str, float]:
    """One resume of a copy of the built checkpoint, in a process importing ``code_path``'s batchrun."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir()
    copy = shutil.copytree(built / "out.jsonl.checkpoint", scratch / "out.jsonl.checkpoint")
    for file in copy.iterdir():  # as the interrupted run left them: on disk, not owed to it by the page cache
        with file.open("rb") as f:
            os.fsync(f.fileno())
    env = {**os.environ, "PYTHONPATH": str(code_path)}
    done = subprocess.run([sys.executable, __file__, "--resume", str(built / "in.jsonl"), str(scratch / "out.jsonl")],
                          env=env, check=True, capture_output=True, text=True)
    shutil.rmtree(scratch)
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def resume_here(source: Path, out: Path) -> None:
    """The child of `time_resume`: resume, and print the figures as JSON."""
    began = time.perf_counter()
    probe = LoopProbe()
    stats = run_async(resume, run_config(source, out), probe)
    took = time.perf_counter() - began
    assert stats.exit_code == 0, stats
    print(json.dumps({"took": took, "longest": probe.longest, "carried": stats.carried_over,
                      "written": stats.written}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--left", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="build the checkpoint here, or reuse the one built here")
    parser.add_argument("--rev", action="append", default=[], help="also time this git revision's batchrun/ (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, each timing every revision once")
    parser.add_argument("--resume", nargs=2, type=Path, help=argparse.SUPPRESS)  # the child of `time_resume`
    args = parser.parse_args()
    if args.resume is not None:
        resume_here(*args.resume)
        return
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        trees = {rev: code(rev, tmp / f"code-{i}") for i, rev in enumerate([WORK_TREE, *args.rev])}
        built = args.keep or tmp / "built"
        first = build(built, args.lines, args.left)
        done = args.lines - args.left
        print(f"first run, interrupted after {done:,} lines: "
              + (f"{first:.1f} s" if first is not None else f"reused from {built}"))
        took: dict[str, list[float]] = {rev: [] for rev in trees}
        longest: dict[str, list[float]] = {rev: [] for rev in trees}
        for round_no in range(args.repeat):
            for rev, path in trees.items():
                figures = time_resume(built, path, tmp / "resume")
                assert figures["written"] == args.lines, figures
                took[rev].append(figures["took"])
                longest[rev].append(figures["longest"])
                print(f"  round {round_no + 1}, {rev}: {figures['carried']:,.0f} finished lines carried over and "
                      f"{args.lines - figures['carried']:,.0f} sent in {figures['took']:.2f} s; the event loop went "
                      f"at most {figures['longest'] * 1000:.0f} ms without running a task")
        for rev in trees:
            median = statistics.median(took[rev])
            print(f"resume, {rev}: {median:.2f} s median of {args.repeat} ({median / args.lines * 1e6:.1f} µs per line; "
                  f"{', '.join(f'{t:.2f}' for t in took[rev])}), the event loop at most "
                  f"{max(longest[rev]) * 1000:.0f} ms without running a task")


if __name__ == "__main__":
    main()
