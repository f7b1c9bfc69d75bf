"""One process against ``--ray`` with 2 shards, side by side, on this machine.

    python scripts/bench_scale.py [--lines 200000] [--concurrency 256] [--cases latency-0,latency-50,quota,slow-half]
                                  [--repeat 1]
                                  [--rev REV]

For each case a fresh ``batchrun mock-server`` process serves each run (its buckets full, its
counters at zero), and ``batchrun run`` runs the same input once as one process and once with
``--ray --shards 2`` (a local Ray cluster using every core), each at ``--concurrency`` per
process. Two columns per side: requests/s over the run's own wall time from its report (Ray's
start and stop are not in it), and the whole command's wall time, start-up included, as
``time batchrun run …`` gives it; the ratios are the one process's over the shards'. CPU is the
command's whole process tree (Ray's processes and workers included, sampled every 0.2 s) and the
simulator's. The quota case limits the simulator to 6,000 RPM with ``x-ratelimit-*`` headers,
on 12,000 lines: the bucket starts full, so a run that keeps to the limit exactly takes 60 s for
the other 6,000; the share of the limit used is that over the run's wall time. The slow-half
case is an input whose lines are not all alike: 40,000 lines at latency 0, the second half
asking for ``"service_tier": "flex"``, which the simulator answers 200 ms later
(``--flex-latency-ms 200``); split in two by lines, one shard would get every slow line.

Under the table, each ``--ray`` run's phases as its ``-v`` line gives them (`scale.phases`):
Ray's start, the split, the plan, the shards (how long after submission each started, how long
each ran), Ray's stop, the merge; "rest" is what the command spent besides (interpreter start,
imports, exit). Beside the merge, a plain ``cat`` of the output's bytes to a new file, and with
an fsync, the floor the merge (which fsyncs) is measured against. And what the command spent
besides its longest shard's run (its start-up and end, all but the shards' requests), with its
median under the table: the fixed cost, which moves far less with the machine's load than the
shards' run does. Then where the command's CPU went, by process (the driver, the shards'
workers, the run's actor, Ray's agents, GCS and raylet), beside the most it could spend to be
1.25x one process start-up included: what the cores give in one process's command time / 1.25,
less what the simulator spent. Last, the best ratio that run's fixed cost leaves: with the
shards' run as short as the cores allow (one process's CPU and the simulator's, spread over
every core with none idle) and the fixed cost as measured.

``--rev REV`` also runs ``--ray`` with batchrun/ as committed at REV (``git archive``) in each
repetition, between the two others, in a row of its own beside the same one-process run: a
before/after side by side on a machine whose load changes. Each side runs from a copy of its
batchrun/ made at the start (the work tree's as it is then).

Targets: latency 0, Ray ≥ 1.5x the single process over the runs' wall time, and ≥ 1.25x start-up
included at 100,000 lines (``--lines 100000 --cases latency-0``); latency 50 ms, ≥ 0.95x; quota,
2 shards together ≥ 95% of the limit with < 1% 429s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parent.parent
QUOTA_RPM = 6000
SLOW_HALF_LINES = 40_000
SAMPLE_S = 0.2
TARGET = 1.25  # two shards against one process, start-up included (`cpu_note`)


def write_input(path: Path, lines: int, slow_from: int | None = None) -> None:
    """:param slow_from: the lines from this one on ask for flex (the slow-half case)."""
    with path.open("wb") as f:
        for i in range(lines):
            body: dict[str, object] = {"model": "gpt-4o-mini", "max_tokens": 16,
                                       "messages": [{"role": "user", "content": f"question {i}"}]}
            if slow_from is not None and i >= slow_from:
                body["service_tier"] = "flex"
            f.write(orjson.dumps({"custom_id": f"r{i}", "body": body}) + b"\n")


class Server:
    """``batchrun mock-server`` in a process of its own."""

    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "batchrun", "mock-server", "--port", "0", *flags],
                                     stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stderr is not None
        self.base_url = self.proc.stderr.readline().split()[3]
        self.process = psutil.Process(self.proc.pid)

    def stats(self) -> dict[str, object]:
        with urllib.request.urlopen(self.base_url.rsplit("/v1", 1)[0] + "/_simulator/stats") as reply:
            result: dict[str, object] = json.loads(reply.read())
        return result

    def cpu_s(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


# What a process of a --ray command is: Ray titles its workers by what they run ("ray::IDLE",
# "ray::_run_part", "ray::RunDesk.lease", "ray::DashboardAgent"), and its GCS and raylet are
# programs of their own. The CPU each kind spent is shown under the table.
TITLES = (("RunDesk", "the run's actor"), ("_run_part", "shards"), ("DashboardAgent", "dashboard agent"),
          ("RuntimeEnvAgent", "runtime-env agent"))
PROGRAMS = {"gcs_server": "GCS", "raylet": "raylet"}


def kind(process: psutil.Process, root: psutil.Process) -> str | None:
    """What ``process`` is, ``"driver"`` for the command itself; ``None`` while it cannot be told
    (a worker not titled yet, or idle: it is named once it runs something)."""
    if process.pid == root.pid:
        return "driver"
    line = process.cmdline()
    if not line:
        return None
    if line[0].startswith("ray::"):
        return next((name for marker, name in TITLES if marker in line[0]), None)
    return PROGRAMS.get(Path(line[0]).name)


class TreeCpu:
    """CPU seconds of a process and every process under it (Ray's raylet, workers, agents), each
    as last sampled: one that ends between two samples loses at most `SAMPLE_S` of its time."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.seen: dict[tuple[int, float], float] = {}  # (pid, start time) → CPU seconds
        self.kinds: dict[tuple[int, float], str] = {}  # (pid, start time) → `kind`, once known
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        for process in processes:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    key = (process.pid, process.create_time())
                    self.seen[key] = times.user + times.system + times.children_user + times.children_system
                    if key not in self.kinds and (found := kind(process, self.root)) is not None:
                        self.kinds[key] = found
            except psutil.Error:
                continue

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return sum(self.seen.values())

    def by_kind(self) -> dict[str, float]:
        """CPU seconds by `kind`, the most first; "other" for processes never told apart."""
        spent: dict[str, float] = {}
        for key, seconds in self.seen.items():
            name = self.kinds.get(key, "other")
            spent[name] = spent.get(name, 0.0) + seconds
        return dict(sorted(spent.items(), key=lambda item: -item[1]))


@dataclass(frozen=True)
class Result:
    rps: float  # lines over the run's own wall time (its report's)
    wall: float
    command: float  # the whole command's wall time
    cpu: float  # the command's process tree
    server_cpu: float
    requests: float
    refused: float
    phases: str  # the --ray run's -v line, without its "phases: "
    cat: tuple[float, float] = (0.0, 0.0)  # `cat_floor` of its output
    by_kind: dict[str, float] | None = None  # `TreeCpu.by_kind`


def snapshot(folder: Path, rev: str | None = None) -> Path:
    """``folder`` holding a copy of batchrun/: the work tree's, or as committed at ``rev``."""
    folder.mkdir()
    if rev is None:
        shutil.copytree(REPO / "batchrun", folder / "batchrun", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = subprocess.run(["git", "archive", rev, "batchrun"], cwd=REPO, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def run(server: Server, code: Path, source: Path, out: Path, concurrency: int, *extra: str) -> Result:
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(source), "-o", str(out), "--base-url",
                             server.base_url, "-c", str(concurrency), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=code,
                            env={**os.environ, "PYTHONPATH": str(code)})
    cpu = TreeCpu(proc.pid)
    _, stderr = proc.communicate()
    command = time.monotonic() - started
    client_cpu = cpu.stop()
    if proc.returncode != 0:
        sys.exit(f"run failed ({proc.returncode}): {stderr}")
    report = json.loads(out.with_name(out.name.removesuffix(".jsonl") + ".report.json").read_text())
    stats = server.stats()
    responses = stats["responses"]
    assert isinstance(responses, dict)
    phases = re.search(r"phases: (.*)", stderr)
    return Result(report["lines"] / report["wall_time_s"], report["wall_time_s"], command, client_cpu,
                  server.cpu_s(), float(stats["requests"]), float(responses.get("429", 0)),  # type: ignore[arg-type]
                  phases.group(1) if phases else "", cat_floor(out) if phases else (0.0, 0.0), cpu.by_kind())


def cat_floor(out: Path) -> tuple[float, float]:
    """Seconds to ``cat`` the output's bytes into a new file, and that plus an fsync of it."""
    copy = out.with_name(out.name + ".cat")
    began = time.monotonic()
    with copy.open("wb") as target:
        subprocess.run(["cat", str(out)], stdout=target, check=True)
        copied = time.monotonic() - began
        os.fsync(target.fileno())
    synced = time.monotonic() - began
    copy.unlink()
    return copied, synced


def fixed_seconds(command: float, line: str) -> float:
    """What a --ray command spent besides its shards' requests: its wall time less the longest
    shard's run (Ray's start and stop, the split's and plan's share, each shard's start, the
    merge, the interpreter's start and exit). It hardly depends on how fast the shards ran, which
    the machine's load moves most."""
    ran = re.search(r"; ran ([0-9., ]+) s[;)]", line)
    return command - max(float(seconds) for seconds in ran.group(1).split(", ")) if ran else math.nan


def phase_seconds(line: str) -> float:
    """The seconds a phases line accounts for, one after another: not a phase beside another, nor
    each shard's start and run (inside "shards")."""
    return sum(float(seconds) for seconds in re.findall(r"(?:^|, )[a-z ]+ ([0-9.]+) s(?! \(beside)", line))


def cpu_note(one: Result, ray: Result, fixed: float) -> str:
    """Where the --ray command's CPU went, and what it could spend at most to be `TARGET` times as
    fast as one process start-up included: the cores' seconds in that time, less the simulator's.
    Then the best this run's ``fixed`` seconds (`fixed_seconds`) leave: the shards' run cannot take
    less than the lines' CPU and the simulator's spread over every core, and the lines cost two
    shards at least what they cost one process."""
    spent = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in (ray.by_kind or {}).items())
    cores = os.cpu_count() or 1
    given = cores * one.command / TARGET
    budget = given - ray.server_cpu
    shortest = (one.cpu + ray.server_cpu) / cores
    return (f"{spent}; one process {one.cpu:.1f} s. At {TARGET}x, {cores} cores give the command and the simulator "
            f"{given:.1f} CPU s; less the simulator's {ray.server_cpu:.1f} s, the command may "
            f"spend {budget:.1f} s, {budget - one.cpu:+.1f} s against one process; it spent {ray.cpu:.1f} s. "
            f"The shards' run takes at least ({one.cpu:.1f} + {ray.server_cpu:.1f}) / {cores} = {shortest:.1f} s; "
            f"with the {fixed:.2f} s besides it, the command is at best {one.command / (shortest + fixed):.2f}x "
            f"one process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--cases", default="latency-0,latency-50,quota,slow-half")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs per case, one process then --ray")
    parser.add_argument("--rev", help="also run --ray with batchrun/ as committed at this git revision")
    args = parser.parse_args()
    ray_flags = ["-q", "-v", "--ray", "--shards", "2"]
    cases: dict[str, tuple[list[str], int, int | None]] = {
        "latency-0": ([], args.lines, None), "latency-50": (["--latency-ms", "50"], args.lines, None),
        "quota": (["--latency-ms", "50", "--rpm", str(QUOTA_RPM)], 2 * QUOTA_RPM, None),
        "slow-half": (["--flex-latency-ms", "200"], SLOW_HALF_LINES, SLOW_HALF_LINES // 2),
    }
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"{'case':<11} {'lines':>7} {'one process: req/s, command, CPU':>34} {'--ray, 2 shards: req/s, command, CPU':>38}"
          f" {'ratio':>6} {'start-up incl.':>14}  simulator CPU; 429s (ray)")
    notes = []
    with tempfile.TemporaryDirectory() as folder:
        code = snapshot(Path(folder) / "snapshot")
        sides = [("one", code, ["-q"])]
        if args.rev:
            sides.append((f"ray@{args.rev}", snapshot(Path(folder) / "snapshot-rev", args.rev), ray_flags))
        sides.append(("ray", code, ray_flags))
        for name in args.cases.split(","):
            flags, lines, slow_from = cases[name]
            source = Path(folder) / f"{name}.jsonl"
            write_input(source, lines, slow_from)
            ratios: dict[str, list[float]] = {label: [] for label, _, _ in sides[1:]}
            commands: dict[str, list[float]] = {label: [] for label, _, _ in sides[1:]}
            fixed: dict[str, list[float]] = {label: [] for label, _, _ in sides[1:]}
            for attempt in range(args.repeat):
                results = {}
                for label, where, extra in sides:
                    server = Server(*flags)
                    try:
                        results[label] = run(server, where, source, Path(folder) / f"{name}-{label}-{attempt}.jsonl",
                                             args.concurrency, *extra)
                    finally:
                        server.close()
                one = results["one"]
                for label, _, _ in sides[1:]:
                    ray = results[label]
                    cells = [f"{r.rps:>8,.0f} req/s, {r.command:>5.1f} s, {r.cpu:>5.1f} s" for r in (one, ray)]
                    share = f"{one.server_cpu:.1f} / {ray.server_cpu:.1f} s; {ray.refused / ray.requests:.2%}"
                    if name == "quota":
                        ideal = (lines - QUOTA_RPM) / QUOTA_RPM * 60
                        share += f"; {ideal / ray.wall:.1%} of {QUOTA_RPM:,} RPM (one process: {ideal / one.wall:.1%})"
                    ratio = ray.rps / one.rps
                    command = one.command / ray.command
                    ratios[label].append(ratio)
                    commands[label].append(command)
                    case = name if label == "ray" else f"{name} {label}"
                    print(f"{case:<11} {lines:>7,} {cells[0]:>34} {cells[1]:>38} {ratio:>5.2f}x {command:>13.2f}x  "
                          f"{share}", flush=True)
                    rest = ray.command - phase_seconds(ray.phases)
                    fixed[label].append(fixed_seconds(ray.command, ray.phases))
                    notes.append(f"  {name} --{label}: {ray.phases}; rest {rest:.2f} s; besides the longest shard's "
                                 f"run {fixed[label][-1]:.2f} s; cat of the output "
                                 f"{ray.cat[0]:.2f} s, with fsync {ray.cat[1]:.2f} s")
                    notes.append(f"    CPU: {cpu_note(one, ray, fixed[label][-1])}")
            if args.repeat > 1:
                for label in ratios:
                    print(f"{name:<11} {label}: median of {args.repeat}: {statistics.median(ratios[label]):.2f}x, "
                          f"start-up included {statistics.median(commands[label]):.2f}x; the command besides the "
                          f"longest shard's run {statistics.median(fixed[label]):.2f} s")
    print("phases of each --ray run (seconds):")
    print("\n".join(notes))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
