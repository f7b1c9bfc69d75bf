"""Every route of one nightly evaluation, measured: online, the flex tier, the Batch API, each
with the response cache filled and then asked again.

    python scripts/bench_routes.py                      # 2,000 lines, about a minute
    python scripts/bench_routes.py --lines 500 --latency-ms 50

A 2,000-line evaluation file (chat lines of gpt-5-mini, a model with flex prices, ``max_tokens``
200) against ``batchrun mock-server`` subprocesses on loopback, each command a ``batchrun run``
subprocess. For each route, three commands:

plain               the route without ``--cache``
--cache (fills)     the same with ``--cache DIR`` on a fresh, empty cache
--cache (again)     the same command again: every line from the cache, nothing sent

The routes: online; ``--tier flex`` against a server refusing 30 % of flex requests for
capacity (``--flex-unavailable 0.3``, retried); ``--via batch`` (the server answers a batch's
lines one every ``--batch-seconds-per-request``, polled every ``--poll-interval``).

Cost is the run's report's ``cost_usd`` (the simulator's usage at the built-in prices: flex and
the Batch API at half the online price); wall time is the command's, process start included;
requests sent are the simulator's counts (``/_simulator/stats``): HTTP requests received
(flex's refusals, the Batch API's uploads, creates and polls included) plus the requests put
in batches. "same" says whether the second ``--cache`` run's output is the first's, modulo the
records' ids and batchrun's own block.
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
MODEL = "gpt-5-mini"


class Server:
    """``batchrun mock-server`` on a free loopback port."""

    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "batchrun", "mock-server", "--port", "0", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.base_url = line.split("listening on ", 1)[1].split()[0]

    def sent(self) -> int:
        """HTTP requests received plus requests put in batches, so far."""
        with urllib.request.urlopen(f"{self.base_url.removesuffix('/v1')}/_simulator/stats") as reply:
            doc: dict[str, Any] = json.load(reply)
        return int(doc["requests"]) + int(doc["batch_requests"])

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
            body = {"model": MODEL, "max_tokens": 200,
                    "messages": [{"role": "system", "content": "Answer the question; then rate your confidence."},
                                 {"role": "user", "content": f"Evaluation item {i}: what is {i} * 7?"}]}
            f.write(json.dumps({"custom_id": f"eval-{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": body}) + "\n")


def comparable(out: Path) -> list[Any]:
    """The output's records without their ids and batchrun's block, in custom_id order."""
    rows = []
    for line in out.read_bytes().splitlines():
        record = json.loads(line)
        record.pop("id")
        record.pop("batchrun")
        rows.append(record)
    return sorted(rows, key=lambda record: record["custom_id"])


def run(server: Server, route: str, name: str, data: Path, out: Path, *flags: str) -> dict[str, Any]:
    before = server.sent()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "batchrun", "run", str(data), "-o", str(out), "-q",
                           "--base-url", server.base_url, *flags], env=_env(), capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{route} {name}: exit {proc.returncode}\n{proc.stderr}")
    report = json.loads(out.with_name(out.name.removesuffix(".jsonl") + ".report.json").read_text())
    return {"route": route, "name": name, "cost": report["cost_usd"], "wall": wall, "sent": server.sent() - before,
            "hits": (report.get("cache") or {}).get("hits", 0), "same": ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "eval.jsonl"
        evaluation(data, args.lines)
        latency = ("--latency-ms", str(args.latency_ms))
        servers = {"online": Server(*latency),
                   "--tier flex": Server(*latency, "--flex-unavailable", "0.3"),
                   "--via batch": Server(*latency, "--batch-seconds-per-request", "0.0005")}
        flags = {"online": ("-c", str(args.concurrency)),
                 "--tier flex": ("-c", str(args.concurrency), "--tier", "flex"),
                 "--via batch": ("--via", "batch", "--poll-interval", "0.2")}
        try:
            for number, (route, server) in enumerate(servers.items()):
                cache = ("--cache", str(folder / f"cache-{number}"))
                outs = [folder / f"{number}-{step}.jsonl" for step in range(3)]
                rows.append(run(server, route, "plain", data, outs[0], *flags[route]))
                rows.append(run(server, route, "--cache (fills)", data, outs[1], *flags[route], *cache))
                rows.append(run(server, route, "--cache (again)", data, outs[2], *flags[route], *cache))
                rows[-1]["same"] = "yes" if comparable(outs[2]) == comparable(outs[1]) else "NO"
        finally:
            for server in servers.values():
                server.close()
    print(f"{args.lines:,} evaluation lines of {MODEL}, simulator at {args.latency_ms:g} ms\n")
    print("| route | run | cost USD | wall s | requests sent | cache hits | same output |")
    print("|---|---|---:|---:|---:|---:|---|")
    for row in rows:
        print(f"| {row['route']} | {row['name']} | {row['cost']:.4f} | {row['wall']:.2f} | {row['sent']:,} | "
              f"{row['hits']:,} | {row['same']} |")
    if any(row["same"] == "NO" or (row["name"] == "--cache (again)" and row["sent"]) for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
