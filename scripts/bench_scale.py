"""One process against ``--ray`` with 2 shards, side by side, on this machine.

    python scripts/bench_scale.py [--lines 200000] [--concurrency 256] [--cases latency-0,latency-50,quota]

For each case a fresh ``batchrun mock-server`` process serves the run (its buckets full, its
counters at zero), and ``batchrun run`` runs the same input once as one process and once with
``--ray --shards 2`` (a local Ray cluster using every core), each at ``--concurrency`` per
process. Requests/s are the lines over the run's own wall time from its report (Ray's start,
about 3 s here, is not in it: the table says how long each command took in all). The quota case
limits the simulator to 6,000 RPM with ``x-ratelimit-*`` headers, on 12,000 lines: the bucket
starts full, so a run that keeps to the limit exactly takes 60 s for the other 6,000; the share
of the limit used is that over the run's wall time.

Targets: latency 0, Ray ≥ 1.5x the single process; latency 50 ms, ≥ 0.95x; quota, 2 shards
together ≥ 95% of the limit with < 1% 429s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

QUOTA_RPM = 6000


def write_input(path: Path, lines: int) -> None:
    with path.open("wb") as f:
        for i in range(lines):
            body = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": f"question {i}"}]}
            f.write(orjson.dumps({"custom_id": f"r{i}", "body": body}) + b"\n")


class Server:
    """``batchrun mock-server`` in a process of its own."""

    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "batchrun", "mock-server", "--port", "0", *flags],
                                     stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stderr is not None
        self.base_url = self.proc.stderr.readline().split()[3]

    def stats(self) -> dict[str, object]:
        with urllib.request.urlopen(self.base_url.rsplit("/v1", 1)[0] + "/_simulator/stats") as reply:
            result: dict[str, object] = json.loads(reply.read())
        return result

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def run(server: Server, source: Path, out: Path, concurrency: int, *extra: str) -> dict[str, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "batchrun", "run", str(source), "-o", str(out), "--base-url",
                           server.base_url, "-c", str(concurrency), "-q", *extra],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"run failed ({done.returncode}): {done.stderr}")
    report = json.loads(out.with_name(out.name.removesuffix(".jsonl") + ".report.json").read_text())
    stats = server.stats()
    responses = stats["responses"]
    assert isinstance(responses, dict)
    return {"rps": report["lines"] / report["wall_time_s"], "wall": report["wall_time_s"],
            "command": time.monotonic() - started, "requests": float(stats["requests"]),  # type: ignore[arg-type]
            "429": float(responses.get("429", 0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--cases", default="latency-0,latency-50,quota")
    args = parser.parse_args()
    cases = {"latency-0": ([], args.lines), "latency-50": (["--latency-ms", "50"], args.lines),
             "quota": (["--latency-ms", "50", "--rpm", str(QUOTA_RPM)], 2 * QUOTA_RPM)}
    print(f"{'case':<11} {'lines':>7} {'one process':>18} {'--ray, 2 shards':>18} {'ratio':>6}  429s (ray)")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.cases.split(","):
            flags, lines = cases[name]
            source = Path(folder) / f"{name}.jsonl"
            write_input(source, lines)
            results = []
            for label, extra in (("one", []), ("ray", ["--ray", "--shards", "2"])):
                server = Server(*flags)
                try:
                    results.append(run(server, source, Path(folder) / f"{name}-{label}.jsonl", args.concurrency,
                                       *extra))
                finally:
                    server.close()
            one, ray = results
            cells = [f"{r['rps']:>8,.0f} req/s ({r['command']:.0f} s)" for r in results]
            share = f"{ray['429'] / ray['requests']:.2%}"
            if name == "quota":
                ideal = (lines - QUOTA_RPM) / QUOTA_RPM * 60
                share += f"; {ideal / ray['wall']:.1%} of {QUOTA_RPM:,} RPM (one process: {ideal / one['wall']:.1%})"
            print(f"{name:<11} {lines:>7,} {cells[0]:>18} {cells[1]:>18} {ray['rps'] / one['rps']:>5.2f}x  {share}")


if __name__ == "__main__":
    main()
