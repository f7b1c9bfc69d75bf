"""The response cache on a nightly evaluation: the same command run again costs nothing.

    python scripts/bench_cache.py                       # 2,000 lines, the simulator at 50 ms
    python scripts/bench_cache.py --lines 5000 --latency-ms 200 --via-batch

A 2,000-line evaluation file (chat lines, ``temperature`` 0, ``max_tokens`` 200) against one
``batchrun mock-server`` subprocess on loopback, each command a ``batchrun run`` subprocess:

online              without ``--cache``: what every night costs today
online --cache      the same command with ``--cache DIR`` (an empty cache): it fills it
online --cache      again: every line from the cache, 0 requests sent
(--via-batch)       with a fresh cache: ``--via batch --cache`` fills it from the batches'
                    answers, then ``run --cache`` online sends 0

Cost is the report's ``cost_usd`` (the simulator's usage at the built-in prices); wall time is
the command's, process start included; the requests are the simulator's counts
(``/_simulator/stats``): every HTTP request it received (the Batch API's uploads, creates and
polls included), and the requests put in batches.
Every run's output is checked to be the first's, modulo ids and batchrun's own block.
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class Server:
    """``batchrun mock-server`` on a free loopback port."""

    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "batchrun", "mock-server", "--port", "0", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.base_url = line.split("listening on ", 1)[1].split()[0]

    def sent(self) -> tuple[int, int]:
        """HTTP requests received (the Batch API's calls included), and requests put in batches."""
        with urllib.request.urlopen(f"{self.base_url.removesuffix('/v1')}/_simulator/stats") as reply:
            doc: dict[str, Any] = json.load(reply)
        return int(doc["requests"]), int(doc["batch_requests"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OPENAI_API_KEY", None)
    return env


def evaluation(path: Path, lines: int) -> None:
    with path.open("w") as f:
        for i in range(lines):
            body = {"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 200,
                    "messages": [{"role": "system", "content": "Answer the question; then rate your confidence."},
                                 {"role": "user", "content": f"Evaluation item {i}: what is {i} * 7?"}]}
            f.write(json.dumps({"custom_id": f"eval-{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": body}) + "\n")


def comparable(out: Path) -> list[Any]:
    rows = []
    for line in out.read_bytes().splitlines():
        record = json.loads(line)
        record.pop("id")
        record.pop("batchrun")
        rows.append(record)
    return rows


def run(server: Server, name: str, data: Path, out: Path, *flags: str) -> dict[str, Any]:
    before = server.sent()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "batchrun", "run", str(data), "-o", str(out), "-q",
                           "--base-url", server.base_url, *flags], env=_env(), capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr}")
    report = json.loads(out.with_name(out.name.removesuffix(".jsonl") + ".report.json").read_text())
    cache = report.get("cache") or {}
    after = server.sent()
    return {"name": name, "cost": report["cost_usd"], "wall": wall, "sent": after[0] - before[0],
            "batched": after[1] - before[1],
            "hits": cache.get("hits", 0), "saved": cache.get("saved_usd") or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--via-batch", action="store_true", help="also fill a cache through the Batch API")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "eval.jsonl"
        evaluation(data, args.lines)
        server = Server("--latency-ms", str(args.latency_ms), "--batch-seconds-per-request", "0.001")
        try:
            c = ("-c", str(args.concurrency))
            cache = ("--cache", str(folder / "cache"))
            rows.append(run(server, "online", data, folder / "a.jsonl", *c))
            rows.append(run(server, "online --cache (empty cache)", data, folder / "b.jsonl", *c, *cache))
            rows.append(run(server, "online --cache (again)", data, folder / "c.jsonl", *c, *cache))
            outputs = ["a", "b", "c"]
            if args.via_batch:
                other = ("--cache", str(folder / "batch-cache"))
                rows.append(run(server, "--via batch --cache (empty cache)", data, folder / "d.jsonl", *other,
                                "--via", "batch", "--poll-interval", "1"))
                rows.append(run(server, "online --cache (filled by the batches)", data, folder / "e.jsonl", *c, *other))
                outputs += ["d", "e"]
        finally:
            server.close()
        first = comparable(folder / "a.jsonl")
        same = all(comparable(folder / f"{name}.jsonl") == first for name in outputs)
    print(f"{args.lines:,} evaluation lines, simulator at {args.latency_ms:g} ms, -c {args.concurrency}")
    print(f"{'command':<40} {'cost USD':>9} {'wall s':>7} {'HTTP requests':>14} {'in batches':>11} "
          f"{'cache hits':>11} {'saved USD':>10}")
    for row in rows:
        print(f"{row['name']:<40} {row['cost']:>9.4f} {row['wall']:>7.2f} {row['sent']:>14,} {row['batched']:>11,} "
              f"{row['hits']:>11,} {row['saved']:>10.4f}")
    print(f"every output the first one's, modulo ids and the batchrun block: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
