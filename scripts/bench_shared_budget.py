"""Shards of one run sharing one rate budget, against a rate-limited simulator, in real time.

    python scripts/bench_shared_budget.py [--rpm 6000] [--shards 2] [--seconds 30] [--independent]

The simulator runs as its own process (``batchrun mock-server --rpm R``, 20 ms latency). The
shards are `run_batch` calls in this process, each on its own part of the lines, sharing a
`BudgetServer` through `LocalBudgetClient` (``--independent``: each paces itself alone, as
separate runs would). The input is sized to the provider's full bucket (R requests, which the
run may take at once) plus ``--seconds`` of R a minute.

Figures: "used" is what the simulator accepted over what the limit allowed in the run's time
(its full bucket at the start plus R a minute since); "429s" the share of what it received that
its limits refused.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
import orjson

from batchrun import RunConfig, run_batch
from batchrun.runner import run_async
from batchrun.scale.budget import BudgetServer, LocalBudgetClient, ShardBudget
from batchrun.simulator import STATS_PATH


def write_part(path: Path, first: int, count: int) -> None:
    with path.open("wb") as f:
        for i in range(first, first + count):
            body = {"model": "gpt-4o-mini", "max_completion_tokens": 20,
                    "messages": [{"role": "user", "content": f"question {i}"}]}
            f.write(orjson.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                                  "body": body}) + b"\n")


def start_simulator(rpm: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, "-m", "batchrun", "mock-server", "--host", "127.0.0.1", "--port", "0",
                             "--latency-ms", "20", "--rpm", str(rpm)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    for _ in range(200):
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+/v1)", log.read_text(errors="replace"))
        if found:
            return proc, found.group(1)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the simulator did not start:\n{log.read_text(errors='replace')[-2000:]}")


async def run_shards(parts: list[Path], base_url: str, independent: bool) -> None:
    server = BudgetServer()
    async with anyio.create_task_group() as group:
        for number, part in enumerate(parts):
            shared = None if independent else ShardBudget(LocalBudgetClient(server), number)
            config = RunConfig(part, base_url=base_url, concurrency=64)
            group.start_soon(lambda c=config, s=shared: run_batch(c, shared=s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpm", type=int, default=6000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--independent", action="store_true", help="no shared budget: each shard paces alone")
    args = parser.parse_args()
    lines = args.rpm + int(args.seconds * args.rpm / 60)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        proc, base_url = start_simulator(args.rpm, folder / "sim.log")
        try:
            parts = []
            for number in range(args.shards):
                first, last = lines * number // args.shards, lines * (number + 1) // args.shards
                parts.append(folder / f"part{number}.jsonl")
                write_part(parts[-1], first, last - first)
            started = time.monotonic()
            run_async(run_shards, parts, base_url, args.independent)
            elapsed = time.monotonic() - started
            stats = httpx.get(base_url.removesuffix("/v1") + STATS_PATH).json()
        finally:
            proc.terminate()
            proc.wait()
    refused = stats["rate_limited"]["requests"]
    accepted = stats["requests"] - refused
    allowed = args.rpm + elapsed * args.rpm / 60
    mode = "independent" if args.independent else "shared budget"
    print(f"{args.shards} shards, {mode}, {args.rpm:,} RPM, {lines:,} lines in {elapsed:.1f} s: "
          f"used {accepted / allowed:.1%} of the limit, 429s {refused / stats['requests']:.2%} "
          f"({refused:,} of {stats['requests']:,} received)")


if __name__ == "__main__":
    main()
