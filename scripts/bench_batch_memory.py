"""Peak memory of ``run --via batch`` as the input grows tenfold, beside an online run of each file.

    python scripts/bench_batch_memory.py [--lines 20000] [--batch-max-requests 10000]

Each run is a fresh ``batchrun run`` process against one ``batchrun mock-server`` (with its
Batch API) in another; the figure is each run's own peak RSS. (A child forked from a process
holding the simulator's files would count the parent's pages in its peak.) The larger file is ``--lines`` × 10 lines
and so ten times as many batches: planning, polling, downloading and putting the answers in
order must not hold more for it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

# Runs the CLI in a child and prints the child's peak RSS in KB, as its last line of stderr.
_MEASURE = """
import resource, sys
from batchrun.cli import main
try:
    main(sys.argv[1:], prog_name="batchrun")
finally:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def write_input(path: Path, lines: int) -> None:
    with path.open("wb") as f:
        for i in range(lines):
            body = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": f"question {i}"}]}
            f.write(orjson.dumps({"custom_id": f"r{i}", "url": "/v1/chat/completions", "body": body}) + b"\n")


def measure(base_url: str, source: Path, out: Path, *extra: str) -> tuple[float, float]:
    """Peak RSS in MB and seconds of one run."""
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", _MEASURE, "run", str(source), "-o", str(out), "--base-url", base_url,
                          "-q", *extra], capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if run.returncode != 0:
        sys.exit(f"run failed ({run.returncode}): {run.stderr}")
    return int(run.stderr.strip().splitlines()[-1]) / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--batch-max-requests", type=int, default=10_000)
    args = parser.parse_args()
    batch = ["--via", "batch", "--poll-interval", "0.5", "--batch-max-requests", str(args.batch_max_requests)]
    server = subprocess.Popen([sys.executable, "-m", "batchrun", "mock-server", "--port", "0",
                               "--batch-seconds-per-request", "0"], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert server.stderr is not None
        base_url = server.stderr.readline().split()[3]  # "simulator listening on URL ..."
        table(base_url, args.lines, args.batch_max_requests, batch)
    finally:
        server.terminate()
        server.wait()


def table(base_url: str, lines: int, per_batch: int, batch: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'lines':>9}  {'batches':>7}  {'online MB':>9}  {'batch MB':>8}  {'batch s':>7}")
        for count in (lines, lines * 10):
            source = Path(folder) / f"in-{count}.jsonl"
            write_input(source, count)
            online, _ = measure(base_url, source, Path(folder) / f"online-{count}.jsonl", "-c", "64")
            via_batch, seconds = measure(base_url, source, Path(folder) / f"batch-{count}.jsonl", *batch)
            parts = -(-count // per_batch)
            print(f"{count:>9,}  {parts:>7,}  {online:>9.0f}  {via_batch:>8.0f}  {seconds:>7.1f}")


if __name__ == "__main__":
    main()
