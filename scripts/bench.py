"""Benchmark ``batchrun run`` end to end against the simulator, beside two baselines.

    python scripts/bench.py                 # C 64,256 x latency 0,50,200 ms; 3 clients; 3 repeats
    python scripts/bench.py --quick         # smoke run: 300 requests, 1 repeat, under a minute
    python scripts/bench.py --memory        # batchrun's peak RSS at 20k and 200k lines
    python scripts/bench.py --rev 9650629 --clients batchrun,batchrun@9650629,aiohttp-loop \
        --concurrency 256                   # before and after a change, in one command
    python scripts/bench.py --clients batchrun,httpx-pool,httpx-sharded,httpx-aiohttp,aiohttp \\
        --concurrency 256 --latency-ms 50,200 --json-out results.json

How it runs. For each latency L the simulator is started as a subprocess
(``python -m batchrun mock-server --host 127.0.0.1 --port 0 --latency-ms L``; port 0 lets it
pick a free port, read back from the line it prints). For each request count N one input file
of N OpenAI Batch envelope lines is generated in a temporary directory (chat bodies of 350-450
bytes: a system and a user message, ``max_completion_tokens``). For each concurrency C every
client runs on that file as its own subprocess, in a fresh directory, R times, the clients
taking turns so that other load on the machine falls on all of them alike. Everything is on
loopback; the temporary directory is removed at the end.
All subprocesses import batchrun from a copy of ``batchrun/`` taken at the start (commit and
uncommitted changes named in the header), so edits made to the tree during a run do not mix.

Clients (programs in scripts/bench_clients/):
  batchrun       the real CLI, ``batchrun run INPUT -o OUT --base-url URL --concurrency C -q``,
                 run exactly as ``python -m batchrun`` runs it: reading, ordering, writing.
  aiohttp-loop   the practical floor: C workers on a bounded asyncio.Queue, one aiohttp
                 session with ``TCPConnector(limit=C)``, orjson; on uvloop like batchrun.
  openai-sdk     what users write: ``AsyncOpenAI`` defaults, ``asyncio.Semaphore(C)``, one task
                 per line under ``asyncio.gather``, plain asyncio (no uvloop).
  batchrun@REV   the same CLI as committed at REV (``--rev``; ``git archive``), side by side with
                 the work tree's: a change measured before and after on the same machine, at once.
  batchrun-mypyc the work tree's CLI with its per-line modules compiled (``setup.py``'s
                 ``BATCHRUN_MYPYC=1``, built in its own copy at the start: about a CPU minute and
                 a half; needs the bench extra's mypy and setuptools).
  httpx-pool, httpx-sharded, httpx-aiohttp, aiohttp
                 batchrun's engine through its Python API over different httpx transports:
                 one pool with limits C/C; C/8 pools of 8/8 in round robin; the
                 ``httpx_aiohttp`` transport; batchrun's default aiohttp transport.

Figures (medians over the R runs of a client; a failed run is left out and counted):
  req/s          N / wall time of the request phase. Each client times its own request phase,
                 from after its imports to its last result (batchrun: the output committed),
                 so interpreter start-up is outside the clock for all. In brackets: min-max.
  % ideal        req/s / (C / L). At L = 0 there is no ideal.
  CPU ms/req     client CPU (user + system, all threads) over the request phase, per request.
  start CPU ms   the rest of the client process's CPU: interpreter, imports, exit (wait4).
  RSS MB         the client process's peak RSS (wait4 ``ru_maxrss``).
  conns          TCP connections the simulator saw the client open.
  sim CPU ms/req the simulator's CPU over the run, per request (it shares the cores).
A run counts only if the client got N successes (batchrun: N output lines, in input order,
each with ``"error": null``), exited 0 and finished within its timeout (``--timeout``; by default
60 s + N/20 s, at most 30 minutes); a client still running then is killed.

Request counts, unless ``--requests`` is given: 5,000 at L = 0; otherwise 4 s of the ideal
rate (4 C / L), at least 2,000 and at most 10,000, which keeps the default run near 8 minutes
when the openai-sdk loop reaches only 300-500 req/s. ``--memory`` runs batchrun alone at C 256,
L 0, on 20,000 and 200,000 lines, once unless ``--repeat`` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[1]
CLIENTS_DIR = REPO / "scripts" / "bench_clients"
COMPILED = "batchrun-mypyc"  # the client whose snapshot is compiled (`Workspace.create`)
DEFAULT_CLIENTS = ("batchrun", "aiohttp-loop", "openai-sdk")
QUICK_REQUESTS = 300
MEMORY_CASES = ((256, 0.0, 20_000), (256, 0.0, 200_000))
STARTUP_TIMEOUT_S = 20.0
PACKAGES = ("batchrun", "aiohttp", "httpx", "httpx-aiohttp", "openai", "uvloop", "anyio", "orjson")


# --- what runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One configuration: C requests in flight against a server answering after L ms, N lines."""

    concurrency: int
    latency_ms: float
    requests: int

    @property
    def ideal(self) -> float | None:
        """The ideal rate C / L in req/s; None at L = 0."""
        return self.concurrency / (self.latency_ms / 1000) if self.latency_ms else None

    @property
    def label(self) -> str:
        return f"C={self.concurrency} L={self.latency_ms:g}ms N={self.requests}"


@dataclass(frozen=True)
class Client:
    """How to start a client: its argv from (input, output, base URL, C); whether it writes output."""

    argv: Callable[[Path, Path, str, int], list[str]]
    writes_output: bool


def _cli(inp: Path, out: Path, url: str, c: int) -> list[str]:
    return [PYTHON, str(CLIENTS_DIR / "batchrun_cli.py"), "run", str(inp), "-o", str(out),
            "--base-url", url, "--concurrency", str(c), "-q"]


def _at(snapshot: Path) -> Client:
    """The CLI client importing batchrun from ``snapshot`` (a revision's) instead of the work tree's."""
    return Client(lambda inp, out, url, c: ["env", f"PYTHONPATH={snapshot}", *_cli(inp, out, url, c)], True)


def _baseline(script: str) -> Client:
    return Client(lambda inp, out, url, c: [PYTHON, str(CLIENTS_DIR / script), str(inp), url, str(c)], False)


def _api(transport: str) -> Client:
    script = str(CLIENTS_DIR / "batchrun_api.py")
    return Client(lambda inp, out, url, c: [PYTHON, script, transport, str(inp), str(out), url, str(c)], True)


CLIENTS: dict[str, Client] = {
    "batchrun": Client(_cli, True),
    "aiohttp-loop": _baseline("aiohttp_loop.py"),
    "openai-sdk": _baseline("openai_sdk.py"),
    **{name: _api(name) for name in ("httpx-pool", "httpx-sharded", "httpx-aiohttp", "aiohttp")},
}


@dataclass
class Run:
    """One client run on one case, as measured; ``failure`` says why it does not count."""

    client: str
    concurrency: int
    latency_ms: float
    requests: int
    repeat: int
    failure: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    process_cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    server_requests: int = 0
    server_connections: int = 0
    server_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0


# --- input --------------------------------------------------------------------------------

SYSTEM_PROMPTS = (
    "You are a patient teacher. Answer in plain English, define any technical term the first time "
    "you use it, and keep the answer short.",
    "You are a senior engineer reviewing a colleague's question. Be direct and specific, and say "
    "so when you are unsure.",
    "You are a helpful assistant for a public library. Give balanced, factual answers.",
)
TOPICS = ("how vaccines train the immune system", "why the sky is blue", "what a hash table is",
          "how interest rates affect mortgages", "why bread dough rises", "how GPS finds a position",
          "what causes the seasons", "how a compiler optimises loops", "why cats purr")
AUDIENCES = ("a curious ten-year-old", "a first-year student", "a retired accountant", "a busy manager")


def custom_id(index: int) -> str:
    return f"bench-{index:07d}"


def write_input(path: Path, lines: int, seed: int = 2) -> None:
    """N envelope lines for ``/v1/chat/completions``, varied so that answers vary too."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for index in range(lines):
            user = (f"Explain {rng.choice(TOPICS)} to {rng.choice(AUDIENCES)}. Use one everyday "
                    f"example, name one common misconception, and end with a sentence worth "
                    f"remembering. (request {index})")
            body = {"model": "gpt-4o-mini", "max_completion_tokens": rng.choice((128, 256, 400)),
                    "messages": [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)},
                                 {"role": "user", "content": user}]}
            envelope = {"custom_id": custom_id(index), "method": "POST", "url": "/v1/chat/completions",
                        "body": body}
            f.write(json.dumps(envelope, separators=(",", ":")) + "\n")


def count_successes(path: Path) -> tuple[int, int]:
    """(lines, successes) of a batchrun output file; a success is at its input position."""
    lines = ok = 0
    with path.open("rb") as f:
        for index, line in enumerate(f):
            lines += 1
            record = json.loads(line)
            response = record.get("response") or {}
            in_place = record.get("custom_id") == custom_id(index)
            if in_place and record.get("error") is None and response.get("status_code") == 200:
                ok += 1
    return lines, ok


# --- processes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """The temporary directory of a bench run, and the environment its subprocesses get."""

    path: Path
    env: dict[str, str]

    @classmethod
    def create(cls, path: Path, revs: Sequence[str] = (), compiled: bool = False) -> Workspace:
        """Snapshot batchrun/ into ``path`` so every run measures the same code, even while the
        work tree changes under a long bench (and each of ``revs``' batchrun/, for its
        ``batchrun@REV`` client, and with ``compiled`` another, compiled, for ``batchrun-mypyc``);
        the environment loses proxies, OpenAI keys and URLs and batchrun settings (loopback
        only, defaults only) and puts the snapshot first."""
        shutil.copytree(REPO / "batchrun", path / "snapshot" / "batchrun",
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        if compiled:
            folder = path / "snapshot-mypyc"
            shutil.copytree(path / "snapshot" / "batchrun", folder / "batchrun")
            shutil.copy(REPO / "setup.py", folder)
            subprocess.run([PYTHON, "setup.py", "-q", "build_ext", "--inplace"], cwd=folder, check=True,
                           capture_output=True, env={**os.environ, "BATCHRUN_MYPYC": "1"})
            CLIENTS[COMPILED] = _at(folder)
        for rev in revs:
            folder = path / f"snapshot-{rev}"
            folder.mkdir()
            archive = subprocess.run(["git", "archive", rev, "batchrun"], cwd=REPO, check=True, capture_output=True)
            subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
            CLIENTS[f"batchrun@{rev}"] = _at(folder)
        drop = re.compile(r"(?i)^(OPENAI_|BATCHRUN_)|_proxy$|^PYTHONPATH$")
        env = {k: v for k, v in os.environ.items() if not drop.search(k)}
        env["PYTHONPATH"] = str(path / "snapshot")
        return cls(path, env)


@dataclass
class Simulator:
    """The running simulator subprocess: where it listens, and its counters."""

    base_url: str
    process: psutil.Process
    _opener: urllib.request.OpenerDirector = field(
        default_factory=lambda: urllib.request.build_opener(urllib.request.ProxyHandler({})))

    def snapshot(self) -> tuple[int, int, float]:
        """(requests, connections, CPU seconds) so far."""
        stats_url = self.base_url.removesuffix("/v1") + "/_simulator/stats"
        with self._opener.open(stats_url, timeout=10) as response:
            stats = json.load(response)
        times = self.process.cpu_times()
        return stats["requests"], stats["connections"], times.user + times.system


@contextlib.contextmanager
def simulator(latency_ms: float, space: Workspace) -> Iterator[Simulator]:
    """Start ``batchrun mock-server`` on a free loopback port; stop it on exit."""
    log = space.path / f"simulator-{latency_ms:g}.log"
    argv = [PYTHON, "-m", "batchrun", "mock-server", "--host", "127.0.0.1", "--port", "0",
            "--latency-ms", f"{latency_ms:g}"]
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env=space.env)
    try:
        yield Simulator(_wait_listening(proc, log), psutil.Process(proc.pid))
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a simulator, and kill it if it has not gone within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_listening(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+/v1)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"the simulator did not start:\n{log.read_text(errors='replace')[-2000:]}")


@dataclass
class Finished:
    """A client process after it ended (or was killed)."""

    status: int
    killed: bool
    cpu_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str


def run_process(argv: list[str], env: dict[str, str], rundir: Path, timeout_s: float) -> Finished:
    """Run argv in ``rundir`` to its end, killing it after ``timeout_s``; its CPU and peak RSS from wait4."""
    out_path, err_path = rundir / "client.stdout", rundir / "client.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=rundir)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    try:
        _, wait_status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(wait_status)  # reaped here, not by Popen
    return Finished(proc.returncode, killed.is_set(), usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                    out_path.read_text(errors="replace"), err_path.read_text(errors="replace"))


# --- measuring ----------------------------------------------------------------------------


def measure(name: str, case: Case, sim: Simulator, input_path: Path, space: Workspace, repeat: int,
            timeout_s: float) -> Run:
    """Run one client once on ``case`` and check that it got every answer."""
    client = CLIENTS[name]
    # A fresh directory per run: a checkpoint left beside an output would make the next run resume.
    rundir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=space.path))
    output = rundir / "results.jsonl"
    run = Run(name, case.concurrency, case.latency_ms, case.requests, repeat)
    before = sim.snapshot()
    argv = client.argv(input_path, output, sim.base_url, case.concurrency)
    finished = run_process(argv, space.env, rundir, timeout_s)
    after = sim.snapshot()
    # The second stats request came on a connection of its own: it is not the client's.
    run.server_requests, run.server_connections = after[0] - before[0], after[1] - before[1] - 1
    run.server_cpu_s = after[2] - before[2]
    run.process_cpu_s, run.peak_rss_mb = finished.cpu_s, finished.peak_rss_mb
    report = _report(finished.stdout)
    run.failure = _failure(finished, report, output if client.writes_output else None, case.requests, timeout_s)
    if report is not None:
        run.wall_s, run.cpu_s = report["wall_s"], report["cpu_s"]
    shutil.rmtree(rundir)
    return run


def _report(stdout: str) -> dict[str, Any] | None:
    lines = stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None
    return report if isinstance(report, dict) and "wall_s" in report else None


def _failure(finished: Finished, report: dict[str, Any] | None, output: Path | None, n: int,
             timeout_s: float) -> str | None:
    if finished.killed:
        return f"killed after the {timeout_s:.0f} s timeout"
    tail = finished.stderr.strip()[-300:]
    if finished.status != 0:
        return f"exit status {finished.status}: {tail}"
    if report is None:
        return f"no report on stdout: {tail}"
    if output is None:
        ok = report["ok"]
        return None if ok == n else f"{ok} of {n} requests succeeded"
    lines, ok = count_successes(output) if output.exists() else (0, 0)
    return None if lines == ok == n else f"{lines} output lines for {n} inputs, {ok} successes in order"


def run_cases(cases: list[Case], clients: list[str], repeats: int, space: Workspace,
              timeout: float | None) -> list[Run]:
    """Every client on every case, ``repeats`` times, the clients taking turns."""
    runs: list[Run] = []
    total = len(cases) * len(clients) * repeats
    inputs: dict[int, Path] = {}
    for latency in sorted({case.latency_ms for case in cases}):
        with simulator(latency, space) as sim:
            for case in (c for c in cases if c.latency_ms == latency):
                input_path = inputs.get(case.requests) or _new_input(space.path, case.requests, inputs)
                timeout_s = timeout or default_timeout(case.requests)
                for repeat in range(repeats):
                    for name in clients:
                        run = measure(name, case, sim, input_path, space, repeat, timeout_s)
                        runs.append(run)
                        _progress(len(runs), total, case, run)
    return runs


def _new_input(workdir: Path, lines: int, inputs: dict[int, Path]) -> Path:
    path = inputs[lines] = workdir / f"input-{lines}.jsonl"
    write_input(path, lines)
    return path


def _progress(done: int, total: int, case: Case, run: Run) -> None:
    if run.failure:
        outcome = f"FAILED: {run.failure}"
    else:
        outcome = (f"{run.rate:,.0f} req/s, {run.cpu_s * 1000 / run.requests:.3f} CPU ms/req, "
                   f"{run.peak_rss_mb:.0f} MB, {run.server_connections} conns")
        if run.server_requests != run.requests:
            outcome += f", {run.server_requests} requests sent"
    print(f"[{done}/{total}] {case.label} {run.client} #{run.repeat + 1}: {outcome}", file=sys.stderr, flush=True)


# --- reporting ----------------------------------------------------------------------------


@dataclass
class Summary:
    """Medians of one client's counted runs on one case."""

    client: str
    case: Case
    runs: int
    failed: int
    rate: float = 0.0
    rate_min: float = 0.0
    rate_max: float = 0.0
    cpu_ms: float = 0.0
    start_cpu_ms: float = 0.0
    rss_mb: float = 0.0
    conns: float = 0.0
    sim_cpu_ms: float = 0.0

    @property
    def share(self) -> float | None:
        return self.rate / self.case.ideal if self.case.ideal and self.runs else None


def summarize(runs: list[Run]) -> list[Summary]:
    groups: dict[tuple[str, Case], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.client, Case(run.concurrency, run.latency_ms, run.requests)), []).append(run)
    summaries = []
    for (client, case), group in groups.items():
        good = [r for r in group if r.failure is None]
        summary = Summary(client, case, len(good), len(group) - len(good))
        if good:
            rates = [r.rate for r in good]
            summary.rate, summary.rate_min, summary.rate_max = statistics.median(rates), min(rates), max(rates)
            summary.cpu_ms = statistics.median(r.cpu_s * 1000 / r.requests for r in good)
            summary.start_cpu_ms = statistics.median((r.process_cpu_s - r.cpu_s) * 1000 for r in good)
            summary.rss_mb = statistics.median(r.peak_rss_mb for r in good)
            summary.conns = statistics.median(r.server_connections for r in good)
            summary.sim_cpu_ms = statistics.median(r.server_cpu_s * 1000 / r.requests for r in good)
        summaries.append(summary)
    return summaries


def results_table(summaries: list[Summary]) -> str:
    rows = ["| C | latency | N | client | req/s (min-max) | % ideal | CPU ms/req | start CPU ms | RSS MB "
            "| conns | sim CPU ms/req | runs |",
            "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        case = s.case
        head = f"| {case.concurrency} | {case.latency_ms:g} ms | {case.requests:,} | {s.client} |"
        runs = f"{s.runs} ok" + (f", **{s.failed} failed**" if s.failed else "")
        if not s.runs:
            rows.append(f"{head} — | — | — | — | — | — | — | {runs} |")
            continue
        share = f"{s.share:.0%}" if s.share is not None else "—"
        rows.append(f"{head} {s.rate:,.0f} ({s.rate_min:,.0f}-{s.rate_max:,.0f}) | {share} | {s.cpu_ms:.3f} | "
                    f"{s.start_cpu_ms:,.0f} | {s.rss_mb:.0f} | {s.conns:g} | {s.sim_cpu_ms:.3f} | {runs} |")
    return "\n".join(rows)


def ratios_table(summaries: list[Summary]) -> str | None:
    """batchrun (and each ``batchrun@REV``) against the aiohttp loop (throughput, CPU) and the
    openai-SDK loop (throughput): the ratios of one command, which other load on the machine
    moves far less than the rates."""
    by_key = {(s.client, s.case): s for s in summaries if s.runs}
    rows = ["| C | latency | client | ÷ aiohttp-loop req/s | ÷ aiohttp-loop CPU/req | ÷ openai-sdk req/s |",
            "|---:|---:|---|---:|---:|---:|"]
    for (client, case), own in by_key.items():
        if client.partition("@")[0] not in ("batchrun", COMPILED):
            continue
        floor, sdk = by_key.get(("aiohttp-loop", case)), by_key.get(("openai-sdk", case))
        if floor is None and sdk is None:
            continue
        cells = [f"{own.rate / floor.rate:.2f}x" if floor else "—",
                 f"{own.cpu_ms / floor.cpu_ms:.2f}x" if floor else "—",
                 f"{own.rate / sdk.rate:.1f}x" if sdk else "—"]
        rows.append(f"| {case.concurrency} | {case.latency_ms:g} ms | {client} | " + " | ".join(cells) + " |")
    return "\n".join(rows) if len(rows) > 2 else None


def target_checks(summaries: list[Summary]) -> list[str]:
    """The targets for batchrun that the measured cases speak to, each met or missed."""
    ours = [s for s in summaries if s.client == "batchrun" and s.runs]
    sdk = {s.case: s for s in summaries if s.client == "openai-sdk" and s.runs}
    checks: list[tuple[str, bool]] = []
    for s in ours:
        where = f"C={s.case.concurrency}, {s.case.latency_ms:g} ms, N={s.case.requests:,}"
        goal = {50.0: 0.75, 200.0: 0.85}.get(s.case.latency_ms) if s.case.concurrency == 256 else None
        if goal is not None and s.share is not None:
            checks.append((f"{where}: {s.share:.0%} of the ideal (target ≥ {goal:.0%})", s.share >= goal))
        if s.case.latency_ms == 0:
            checks.append((f"{where}: {s.cpu_ms:.3f} CPU ms/req (target ≤ 0.3)", s.cpu_ms <= 0.3))
        if s.case.concurrency == 256 and s.case.latency_ms == 50 and s.case in sdk:
            ratio = s.rate / sdk[s.case].rate
            checks.append((f"{where}: {ratio:.1f}x the openai-sdk loop's req/s (target ≥ 5x)", ratio >= 5))
        checks.append((f"{where}: peak RSS {s.rss_mb:.0f} MB (target < 100 MB)", s.rss_mb < 100))
    checks.extend(_flat_memory_checks(ours))
    return [f"- {'met' if ok else '**MISSED**'}: {text}" for text, ok in checks]


def _flat_memory_checks(ours: list[Summary]) -> list[tuple[str, bool]]:
    """Peak RSS the same (within 10%) for the smallest and largest N of one C and L."""
    by_setting: dict[tuple[int, float], list[Summary]] = {}
    for s in ours:
        by_setting.setdefault((s.case.concurrency, s.case.latency_ms), []).append(s)
    checks = []
    for (c, latency), group in by_setting.items():
        small, large = min(group, key=lambda s: s.case.requests), max(group, key=lambda s: s.case.requests)
        if small is not large:
            ratio = large.rss_mb / small.rss_mb
            checks.append((f"C={c}, {latency:g} ms: peak RSS {small.rss_mb:.0f} MB at {small.case.requests:,} "
                           f"lines, {large.rss_mb:.0f} MB at {large.case.requests:,} ({ratio:.2f}x; target: the "
                           f"same, ≤ 1.10x)", ratio <= 1.10))
    return checks


def environment() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "packages": versions, "batchrun_tree": _git_state()}


def _git_state() -> str:
    """The commit measured, and whether batchrun/ had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit, changes = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--", "batchrun")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit or 'unknown'}{' + uncommitted changes' if changes else ''}"


def render(summaries: list[Summary], env: dict[str, Any], elapsed_s: float, quick: bool) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    load = ", ".join(f"{x:.2f}" for x in env["load_average"])
    loops = "uvloop" if "uvloop" in env["packages"] else "asyncio (uvloop is not installed)"
    parts = [f"batchrun at {env['batchrun_tree']}; Python {env['python']}, {env['cpus']} CPUs, load average "
             f"before the run {load}; {packages}. "
             f"batchrun, aiohttp-loop and the API clients run on {loops}; openai-sdk on plain asyncio. "
             f"Medians; took {elapsed_s:.0f} s.", "", results_table(summaries)]
    ratios = ratios_table(summaries)
    if ratios:
        parts += ["", ratios]
    checks = [] if quick else target_checks(summaries)  # a smoke run is too short to judge
    if checks:
        parts += ["", "Targets:", *checks]
    return "\n".join(parts)


# --- command line -------------------------------------------------------------------------


def _numbers(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda text: [kind(part) for part in text.split(",") if part]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=lambda t: t.split(","), default=list(DEFAULT_CLIENTS),
                        help=f"comma list from: {', '.join(CLIENTS)} (default: %(default)s)")
    parser.add_argument("--concurrency", type=_numbers(int), default=[64, 256], help="comma list (default: 64,256)")
    parser.add_argument("--latency-ms", type=_numbers(float), default=[0.0, 50.0, 200.0],
                        help="comma list of simulator latencies (default: 0,50,200)")
    parser.add_argument("--requests", type=int, help="lines per run (default: see above)")
    parser.add_argument("--repeat", type=int, help="runs per client and case (default: 3; 1 with --quick/--memory)")
    parser.add_argument("--timeout", type=float, help="seconds before a client is killed (default: 60 + N/20, at most 1800)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_REQUESTS} requests, 1 repeat")
    parser.add_argument("--memory", action="store_true", help="batchrun only, C 256, L 0, 20k and 200k lines")
    parser.add_argument("--json-out", type=Path, help="save every run and the medians as JSON here")
    parser.add_argument("--rev", action="append", default=[],
                        help="also offer client batchrun@REV: the CLI as committed at this git revision (repeatable)")
    args = parser.parse_args()
    unknown = set(args.clients) - set(CLIENTS) - {f"batchrun@{rev}" for rev in args.rev} - {COMPILED}
    if unknown:
        parser.error(f"unknown clients: {', '.join(sorted(unknown))}")
    return args


def default_timeout(requests: int) -> float:
    """Seconds before a client is killed: enough for 20 req/s (one httpx pool at C=256 manages
    about 40), at most half an hour."""
    return min(1800.0, 60 + requests / 20)


def default_requests(concurrency: int, latency_ms: float) -> int:
    if latency_ms == 0:
        return 5_000
    return int(min(10_000, max(2_000, 4 * concurrency / (latency_ms / 1000))))


def plan(args: argparse.Namespace) -> tuple[list[Case], list[str], int]:
    """The cases, clients and repeats the options ask for."""
    if args.memory:
        return [Case(*case) for case in MEMORY_CASES], ["batchrun"], args.repeat or 1
    cases = []
    for latency in args.latency_ms:
        for c in args.concurrency:
            n = args.requests or (QUICK_REQUESTS if args.quick else default_requests(c, latency))
            cases.append(Case(c, latency, n))
    return cases, args.clients, args.repeat or (1 if args.quick else 3)


def main() -> None:
    args = parse_args()
    cases, clients, repeats = plan(args)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="batchrun-bench-") as tmp:
        env = environment()  # the same moment as the snapshot, so the commit it names is the one measured
        workspace = Workspace.create(Path(tmp), args.rev, compiled=COMPILED in clients)
        runs = run_cases(cases, clients, repeats, workspace, args.timeout)
    summaries = summarize(runs)
    print(render(summaries, env, time.monotonic() - started, args.quick))
    if args.json_out:
        document = {"environment": env, "arguments": {k: str(v) for k, v in vars(args).items()},
                    "runs": [asdict(run) for run in runs],
                    "medians": [{**asdict(s), "share_of_ideal": s.share} for s in summaries]}
        args.json_out.write_text(json.dumps(document, indent=1))
    if any(s.failed for s in summaries):
        sys.exit(1)


if __name__ == "__main__":
    main()
