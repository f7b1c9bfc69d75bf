"""``--max-cost`` across starts and routes, side by side for two revisions of batchrun/.

    python scripts/bench_cap.py                          # 9650629 (before the spend ledger) vs the work tree
    python scripts/bench_cap.py --revs 9650629,HEAD --starts 6

Two cases, each run the same way for every revision, against one ``batchrun mock-server``
subprocess per case and revision:

lost-answers  The same capped command run again and again over one output, as a user whose run
              stopped for the budget (exit 3) would run it: 400 chat lines without
              ``max_tokens``, ``--max-cost 0.05 -c 8 --timeout 1 --max-attempts 2``, against a
              simulator that never answers 30 % of requests (``--rate-timeout 0.3``, 20 ms). An
              unanswered request may still have been billed: its worst case counts. "may be
              billed" = the usage the output's lines report, priced, plus every request the
              simulator never answered at its line's worst case (batchrun's own bound).
via-batch     ``--via batch --max-cost`` over 200 lines with ``max_completion_tokens`` 50, the
              cap set to the worst case of 120 lines at the Batch API's price: the requests put
              in created batches, against that cap. Before the ledger batchrun refused the
              combination (exit 2, nothing submitted).

Each revision runs from a copy of its batchrun/ (``git archive``; the work tree as it is for
``WORKTREE``), so both run in one command on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKTREE = "WORKTREE"


def checkout(rev: str, into: Path) -> Path:
    """``rev``'s batchrun/ (or the work tree's) under ``into``; the folder to put on PYTHONPATH."""
    into.mkdir(parents=True)
    if rev == WORKTREE:
        subprocess.run(["cp", "-r", str(REPO / "batchrun"), str(into)], check=True)
        return into
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "batchrun"], check=True, capture_output=True).stdout
    tar = into / "src.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into


class Server:
    """``batchrun mock-server`` of a revision, on a free loopback port."""

    def __init__(self, path: Path, *flags: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(path)}
        self.proc = subprocess.Popen([sys.executable, "-m", "batchrun", "mock-server", "--port", "0", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=path)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.base_url = line.split("listening on ", 1)[1].split()[0]

    def stats(self) -> dict[str, Any]:
        root = self.base_url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/_simulator/stats") as reply:
            doc: dict[str, Any] = json.load(reply)
            return doc

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def batchrun(path: Path, *args: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(path)}
    env.pop("OPENAI_API_KEY", None)
    # Run from the copy's folder: ``-m`` puts the working directory first on the path.
    return subprocess.run([sys.executable, "-m", "batchrun", *args], env=env, capture_output=True, text=True,
                          cwd=path).returncode


def write_lines(path: Path, count: int, **body: Any) -> Path:
    with path.open("w") as f:
        for i in range(count):
            request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"question {i}: say something"}],
                       **body}
            f.write(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": request}) + "\n")
    return path


def worst_cases(path: Path, lines: Path, *, batch: bool) -> list[float]:
    """Each line's worst case, by the work tree's batchrun (the same bound for every revision)."""
    code = ("import json, sys\n"
            "from pathlib import Path\n"
            "from batchrun.accounting.ledger import worst_case\n"
            "from batchrun.accounting.pricing import load_prices\n"
            "from batchrun.reader import read_jobs\n"
            "p = Path(sys.argv[1]); table = load_prices()\n"
            "table = table.with_batch_discount() if sys.argv[2] == '1' else table\n"
            "print(json.dumps([worst_case(j, table.price(j.model)) for j in read_jobs(p, p.stat().st_size)]))\n")
    env = {**os.environ, "PYTHONPATH": str(path)}
    out = subprocess.run([sys.executable, "-c", code, str(lines), "1" if batch else "0"], env=env, check=True,
                         capture_output=True, text=True, cwd=path).stdout
    costs: list[float] = json.loads(out)
    return costs


def usage_cost(path: Path, output: Path) -> float:
    """What the lines of ``output`` (published, or in its checkpoint) report, priced."""
    target = output if output.exists() else output.with_name(output.name + ".checkpoint") / "output.jsonl"
    if not target.exists():
        return 0.0
    code = ("import sys\nfrom batchrun.accounting.report import Report\nfrom batchrun.accounting.pricing import load_prices\n"
            "from batchrun.records import Result\nr = Report(load_prices())\n"
            "for i, line in enumerate(open(sys.argv[1], 'rb')): r.add_result(Result.from_line(i, line))\n"
            "print(r.cost()[1])\n")
    env = {**os.environ, "PYTHONPATH": str(path)}
    return float(subprocess.run([sys.executable, "-c", code, str(target)], env=env, check=True, capture_output=True,
                                text=True, cwd=path).stdout)


def lost_answers(path: Path, tools: Path, work: Path, starts: int) -> dict[str, Any]:
    lines = write_lines(work / "in.jsonl", 400)
    worst = max(worst_cases(tools, lines, batch=False))
    server = Server(path, "--latency-ms", "20", "--rate-timeout", "0.3", "--seed", "3")
    cap = 0.05
    try:
        codes, sent = [], []
        for _ in range(starts):
            codes.append(batchrun(path, "run", str(lines), "-o", str(work / "out.jsonl"), "--base-url", server.base_url,
                                  "--max-cost", str(cap), "-c", "8", "--timeout", "1", "--max-attempts", "2", "-q"))
            sent.append(server.stats()["requests"])
        stats = server.stats()
    finally:
        server.close()
    billed = usage_cost(tools, work / "out.jsonl") + stats["hangs"] * worst
    return {"exit codes": codes, "requests after each start": sent, "unanswered": stats["hangs"],
            "may be billed": round(billed, 4), "times the cap": round(billed / cap, 2)}


def via_batch(path: Path, tools: Path, work: Path) -> dict[str, Any]:
    lines = write_lines(work / "in.jsonl", 200, max_completion_tokens=50)
    costs = worst_cases(tools, lines, batch=True)
    cap = sum(costs[:120]) + costs[120] / 2  # 120 lines fit, the 121st does not
    server = Server(path, "--batch-seconds-per-request", "0.001")
    try:
        code = batchrun(path, "run", str(lines), "-o", str(work / "out.jsonl"), "--base-url", server.base_url,
                        "--via", "batch", "--max-cost", f"{cap:.9f}", "--poll-interval", "0.2", "-q")
        stats = server.stats()
    finally:
        server.close()
    submitted = stats.get("batch_requests")
    if submitted is None:  # a simulator without the counter: what the created batches' files held
        submitted = f"{stats['batches_created']} batches"
    return {"exit code": code, "cap (worst case of 120 lines)": round(cap, 6), "requests submitted": submitted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--revs", default=f"9650629,{WORKTREE}", help="comma list of git revisions (WORKTREE: the work tree)")
    parser.add_argument("--starts", type=int, default=6, help="starts of the lost-answers case (default 6)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tools = checkout(WORKTREE, root / "tools")
        for rev in args.revs.split(","):
            path = checkout(rev, root / rev / "src")
            (root / rev / "a").mkdir()
            (root / rev / "b").mkdir()
            print(f"{rev}:")
            print("  lost-answers:", json.dumps(lost_answers(path, tools, root / rev / "a", args.starts)))
            print("  via-batch:   ", json.dumps(via_batch(path, tools, root / rev / "b")))


if __name__ == "__main__":
    main()
