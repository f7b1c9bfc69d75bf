"""Throughput under provider rate limits (issue 5): how close to the limit, how few 429s.

    python scripts/bench_ratelimit.py [--quick]

Each case starts the simulator with a limit (`batchrun mock-server --rpm/--tpm`, 50 ms latency,
OpenAI-style token buckets and x-ratelimit-* headers, 429 + Retry-After past them), runs
`batchrun run` end to end against it (concurrency 64), and samples the simulator's own counters
every 0.25 s. Reported, from the server's side:

- sustained rate: answered requests (or tokens) per minute between 5 s after the first answer
  (a quarter of the run, if shorter) and the last answer, as a share of the limit;
- 429 share: rate-limited responses over all requests the server received;
- for the limit change: the simulator's rpm is halved mid-run (POST /_simulator/limits), and
  the figure is how long until batchrun's rate over the trailing 2 s is within 5% of the new
  limit, plus the 429s after the change.

Cases: rpm-learned (no flags: limits learned from headers), rpm-flag (--rpm given),
tpm-learned, tpm-flag, rpm-change (learned, halved mid-run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CONCURRENCY = 64
LATENCY_MS = 50
WARMUP_S = 5.0
SAMPLE_S = 0.25


@dataclass
class Case:
    name: str
    requests: int
    rpm: int | None = None
    tpm: int | None = None
    flags: list[str] = field(default_factory=list)
    change_at: float | None = None  # seconds after the first answer: halve the rpm


def write_input(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            body = {"model": "gpt-4o-mini", "max_completion_tokens": 60,
                    "messages": [{"role": "system", "content": "Answer in one short sentence."},
                                 {"role": "user", "content": f"What is a good name for pet number {i}?"}]}
            f.write(json.dumps({"custom_id": f"r{i}", "body": body}) + "\n")


def start_simulator(case: Case) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "batchrun", "mock-server", "--port", "0", "--latency-ms", str(LATENCY_MS)]
    if case.rpm:
        args += ["--rpm", str(case.rpm)]
    if case.tpm:
        args += ["--tpm", str(case.tpm)]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    return proc, line.split()[3]


def sample(base: str, stop: threading.Event, out: list[tuple[float, dict[str, object]]]) -> None:
    with httpx.Client(base_url=base.removesuffix("/v1")) as client:
        while not stop.is_set():
            out.append((time.monotonic(), client.get("/_simulator/stats").json()))
            time.sleep(SAMPLE_S)


def answered(stats: dict[str, object]) -> int:
    return int(stats["responses"].get("200", 0))  # type: ignore[union-attr]


def limited(stats: dict[str, object]) -> int:
    return sum(stats["rate_limited"].values())  # type: ignore[union-attr]


def run_case(case: Case, folder: Path) -> dict[str, object]:
    source = folder / f"{case.name}.jsonl"
    write_input(source, case.requests)
    sim, base = start_simulator(case)
    samples: list[tuple[float, dict[str, object]]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(base, stop, samples))
    sampler.start()
    try:
        client = subprocess.Popen(
            [sys.executable, "-m", "batchrun", "run", str(source), "-o", str(folder / f"{case.name}.out.jsonl"),
             "--base-url", base, "-c", str(CONCURRENCY), "-q", *case.flags])
        changed_at = _maybe_change(case, base, samples, client)
        code = client.wait(timeout=600)
    finally:
        stop.set()
        sampler.join()
        samples.append((time.monotonic(), httpx.get(f"{base.removesuffix('/v1')}/_simulator/stats").json()))
        sim.terminate()
        sim.wait()
        if sim.stderr is not None:
            sim.stderr.close()
    return summarize(case, samples, code, changed_at)


def _maybe_change(case: Case, base: str, samples: list[tuple[float, dict[str, object]]],
                  client: subprocess.Popen[bytes]) -> float | None:
    if case.change_at is None or case.rpm is None:
        return None
    while not samples or answered(samples[-1][1]) == 0:
        time.sleep(0.05)
    time.sleep(case.change_at)
    httpx.post(f"{base.removesuffix('/v1')}/_simulator/limits", json={"rpm": case.rpm // 2})
    return time.monotonic()


def summarize(case: Case, samples: list[tuple[float, dict[str, object]]], code: int,
              changed_at: float | None) -> dict[str, object]:
    first = next(t for t, s in samples if answered(s) > 0)
    last_count = answered(samples[-1][1])
    end = next(t for t, s in samples if answered(s) == last_count)
    if changed_at is not None:
        end = changed_at  # the rate against the first limit
    begin = first + min(WARMUP_S, (end - first) / 4)  # short (quick) runs keep most of their samples
    window = [(t, s) for t, s in samples if begin <= t <= end]
    (t0, s0), (t1, s1) = window[0], window[-1]
    minutes = (t1 - t0) / 60
    result: dict[str, object] = {"case": case.name, "exit": code, "requests": case.requests,
                                 "received": samples[-1][1]["requests"], "rate_limited": limited(samples[-1][1])}
    result["429_share"] = result["rate_limited"] / max(int(result["received"]), 1)  # type: ignore[operator]
    if case.rpm:
        rate = (answered(s1) - answered(s0)) / minutes
        result.update(limit=case.rpm, unit="rpm", rate=round(rate), share=rate / case.rpm)
    else:
        assert case.tpm
        rate = (int(s1["charged_tokens"]) - int(s0["charged_tokens"])) / minutes  # type: ignore[call-overload]
        result.update(limit=case.tpm, unit="tpm", rate=round(rate), share=rate / case.tpm)
    if changed_at is not None:
        result.update(_follow(samples, changed_at, case.rpm // 2))  # type: ignore[operator]
    return result


def _follow(samples: list[tuple[float, dict[str, object]]], changed_at: float, new_rpm: int) -> dict[str, object]:
    after = [(t, s) for t, s in samples if t >= changed_at]
    limited_before = limited(after[0][1])
    for t, _ in after:
        trailing = [(u, v) for u, v in after if t - 2.0 <= u <= t]
        if t - changed_at < 2.0 or len(trailing) < 2:
            continue
        (u0, v0), (u1, v1) = trailing[0], trailing[-1]
        rate = (answered(v1) - answered(v0)) / ((u1 - u0) / 60)
        if rate <= new_rpm * 1.05:
            return {"new_limit": new_rpm, "followed_in_s": round(t - changed_at, 1),
                    "429_after_change": limited(after[-1][1]) - limited_before}
    return {"new_limit": new_rpm, "followed_in_s": None, "429_after_change": limited(after[-1][1]) - limited_before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run, ~1 minute)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    scale = 0.3 if args.quick else 1.0
    rpm, tpm = 6000, 600_000
    cases = [
        Case("rpm-learned", int(3000 * scale), rpm=rpm),
        Case("rpm-flag", int(3000 * scale), rpm=rpm, flags=["--rpm", str(rpm)]),
        Case("tpm-learned", int(3000 * scale), tpm=tpm),
        Case("tpm-flag", int(3000 * scale), tpm=tpm, flags=["--tpm", str(tpm)]),
        Case("rpm-change", int(3500 * scale), rpm=rpm, change_at=10.0 * scale),
    ]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            results.append(run_case(case, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    print("\n| case | limit | sustained rate | share of limit | 429s | share of requests 429'd | after the change |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        change = (f"followed {r['new_limit']:,} rpm in {r['followed_in_s']} s, {r['429_after_change']} 429s"
                  if "new_limit" in r else "")
        print(f"| {r['case']} | {r['limit']:,} {r['unit']} | {r['rate']:,} {r['unit']} | {r['share']:.1%} "
              f"| {r['rate_limited']} | {r['429_share']:.2%} | {change} |")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
