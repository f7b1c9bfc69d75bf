"""One client run against a fresh simulator, watched from the server's side: for bench_pacing.py.

:func:`measure` starts ``batchrun mock-server`` with the case's flags (so its buckets start full
and its counters at zero), a thread that reads ``/_simulator/stats`` every 0.1 s (and changes the
simulator's limits once, when a case asks), then the client as a subprocess to its end or its
timeout, and returns a :class:`Run`: the client's own figures, the final counters, and the
counters over time as :class:`Sample` s. The snapshot of batchrun, the client programs and the
process handling are bench.py's.

Stats keys read: ``requests``, ``responses`` (by status, as strings), ``rate_limited`` (a dict of
counts by bucket: summed), ``charged_requests`` and ``charged_tokens``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import (
    CLIENTS,
    PYTHON,
    Workspace,
    _report,
    _wait_listening,
    count_successes,
    run_process,
    stop,
)

SAMPLE_S = 0.1
REPORT_KEYS = ("requests", "retries", "rate_limited", "wall_time_s", "pacing")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


# --- the simulator --------------------------------------------------------------------------


def _control(base_url: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET (or POST ``payload`` to) one of the simulator's ``/_simulator/*`` endpoints."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(base_url.removesuffix("/v1") + path, data=data,
                                     headers={"content-type": "application/json"})
    with _OPENER.open(request, timeout=10) as response:
        return json.load(response)


def stats(base_url: str) -> dict[str, Any]:
    return _control(base_url, "/_simulator/stats")


@contextlib.contextmanager
def simulator(flags: list[str], space: Workspace) -> Iterator[str]:
    """A fresh ``batchrun mock-server`` on a free loopback port; its base URL. Stopped on exit."""
    fd, log_name = tempfile.mkstemp(prefix="simulator-", suffix=".log", dir=space.path)
    log = Path(log_name)
    argv = [PYTHON, "-m", "batchrun", "mock-server", "--host", "127.0.0.1", "--port", "0", *flags]
    with open(fd, "wb") as err:  # cwd: the workspace, so that `-m batchrun` finds the snapshot
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env=space.env, cwd=space.path)
    try:
        yield _wait_listening(proc, log)
    finally:
        stop(proc)


def simulator_help(space: Workspace) -> str:
    """``mock-server --help`` of the snapshot: which flags this simulator has."""
    argv = [PYTHON, "-m", "batchrun", "mock-server", "--help"]
    return subprocess.run(argv, env=space.env, cwd=space.path, capture_output=True, text=True,
                          timeout=60, check=False).stdout


# --- sampling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """The simulator's counters ``t`` seconds after the sampler started (just before the client)."""

    t: float
    requests: int  # requests received
    answered: int  # 200 responses
    status_429: int  # 429 responses: the limits' and injected ones
    rate_limited: int  # 429s the limits caused
    charged_requests: int  # requests admitted by the limits
    charged_tokens: int  # tokens charged for them, net of refunds

    @classmethod
    def of(cls, t: float, counters: dict[str, Any]) -> Sample:
        responses = counters["responses"]
        return cls(round(t, 3), counters["requests"], responses.get("200", 0), responses.get("429", 0),
                   sum(counters["rate_limited"].values()), counters["charged_requests"],
                   counters["charged_tokens"])


class Sampler(threading.Thread):
    """Reads the counters every SAMPLE_S until :meth:`finish`; POSTs ``change[1]`` to
    ``/_simulator/limits`` ``change[0]`` seconds after the first 200, when ``change`` is given."""

    def __init__(self, base_url: str, change: tuple[float, dict[str, int]] | None) -> None:
        super().__init__(daemon=True)
        self.base_url, self.change = base_url, change
        self.samples: list[Sample] = []
        self.changed_at: float | None = None
        self._t0 = time.monotonic()
        self._halt = threading.Event()

    def run(self) -> None:
        due: float | None = None
        while not self._halt.is_set():
            self.samples.append(Sample.of(time.monotonic() - self._t0, stats(self.base_url)))
            if self.change is not None and self.changed_at is None:
                if due is None and self.samples[-1].answered:
                    due = time.monotonic() + self.change[0]
                if due is not None and time.monotonic() >= due:
                    _control(self.base_url, "/_simulator/limits", self.change[1])
                    self.changed_at = round(time.monotonic() - self._t0, 3)
            self._halt.wait(SAMPLE_S)

    def finish(self) -> dict[str, Any]:
        """Stop; the final counters (also the last sample)."""
        self._halt.set()
        self.join()
        final = stats(self.base_url)
        self.samples.append(Sample.of(time.monotonic() - self._t0, final))
        return final


# --- one run -------------------------------------------------------------------------------


@dataclass
class Run:
    """One client on one case, as measured."""

    client: str  # "batchrun" or "openai-sdk"
    lines: int
    status: int  # exit status
    problem: str | None  # killed, crashed or silent: the figures are partial
    wall_s: float  # the request phase as the client timed it (its whole life when it did not say)
    process_s: float  # from its start to its exit
    ok: int  # lines answered with a success (a killed client: the server's 200s)
    failed: int  # lines not answered with a success (given up on, or never done)
    server: dict[str, Any]  # the simulator's final counters
    samples: list[Sample]
    changed_at: float | None  # when the limits were changed, on the samples' clock
    report: dict[str, Any] | None  # batchrun's <out>.report.json: REPORT_KEYS, its pacing block

    @property
    def rate(self) -> float:
        """Lines answered with a success per second of the request phase."""
        return self.ok / self.wall_s if self.wall_s else 0.0


def batchrun_argv(flags: list[str]) -> Callable[[Path, Path, str, int], list[str]]:
    return lambda inp, out, url, c: [*CLIENTS["batchrun"].argv(inp, out, url, c), *flags]


def sdk_argv(max_retries: int) -> Callable[[Path, Path, str, int], list[str]]:
    return lambda inp, out, url, c: [*CLIENTS["openai-sdk"].argv(inp, out, url, c), str(max_retries)]


def measure(client: str, argv: Callable[[Path, Path, str, int], list[str]], input_path: Path, lines: int,
            concurrency: int, simulator_flags: list[str], spaces: tuple[Workspace, Workspace], timeout_s: float,
            change: tuple[float, dict[str, int]] | None = None) -> Run:
    """Run one client against a fresh simulator, sampling its counters. ``spaces``: the
    client's workspace, the simulator's (the same, unless they run different batchrun/ trees)."""
    space, simulator_space = spaces
    rundir = Path(tempfile.mkdtemp(prefix=f"{client}-", dir=space.path))
    output = rundir / "results.jsonl"
    with simulator(simulator_flags, simulator_space) as url:
        sampler = Sampler(url, change)
        sampler.start()
        started = time.monotonic()
        try:
            finished = run_process(argv(input_path, output, url, concurrency), space.env, rundir, timeout_s)
        finally:
            process_s = time.monotonic() - started
            final = sampler.finish()
    said = _report(finished.stdout)
    ok, failed = _outcome(said, output if client == "batchrun" else None, lines, final)
    problem = _problem(finished.killed, finished.status, said, finished.stderr, timeout_s, client)
    report = _batchrun_report(rundir / "results.report.json")
    shutil.rmtree(rundir)
    return Run(client, lines, finished.status, problem, said["wall_s"] if said else process_s, process_s,
               ok, failed, final, sampler.samples, sampler.changed_at, report)


def _outcome(said: dict[str, Any] | None, output: Path | None, lines: int, final: dict[str, Any]) -> tuple[int, int]:
    """(successes, failures): batchrun's from its output file, the SDK loop's from its report;
    for a client killed or crashed (no report), the server's 200s."""
    if said is None:
        ok = min(final["responses"].get("200", 0), lines)
    elif output is not None:
        ok = count_successes(output)[1] if output.exists() else 0
    else:
        ok = said["ok"]
        if said.get("failed") is not None:
            return ok, said["failed"]
    return ok, lines - ok


def _problem(killed: bool, status: int, said: dict[str, Any] | None, stderr: str, timeout_s: float,
             client: str) -> str | None:
    if killed:
        return f"killed after the {timeout_s:.0f} s timeout"
    if status not in (0, 1) or (status == 1 and client != "batchrun") or said is None:
        return f"exit status {status}: {stderr.strip()[-300:]}"
    return None  # batchrun exits 1 when lines failed: that shows in the counts


def _batchrun_report(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    document = json.loads(path.read_text())
    return {key: document[key] for key in REPORT_KEYS if key in document}
