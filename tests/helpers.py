"""Helpers shared by the tests: JSONL files in and out."""

from __future__ import annotations

import asyncio
import errno
import heapq
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import orjson
import pytest
from click.testing import CliRunner

from batchrun.cli import main
from batchrun.disk import journal
from batchrun.records import Result
from batchrun.stats import RunStats


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def succeeded(record: dict) -> bool:  # type: ignore[type-arg]
    """An output line's success, as a consumer of OpenAI's format reads it: no ``error``, a 2xx response."""
    return record["error"] is None and 200 <= record["response"]["status_code"] < 300


def chat_line(i: int, content: str | None = None, **body: object) -> dict[str, object]:
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content or f"question {i}"}], **body},
    }


class FakeClock:
    """A `batchrun.pacing.Clock` on which sleeping takes no time: it moves the clock on and lets
    the other tasks run. ``waits`` records every sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.waits: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()


class SimClock:
    """The simulator's clock (a callable, as ``time.monotonic``): seconds pass only when a test
    moves ``now``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class HeldClock(FakeClock):
    """A fake clock whose sleeps last until the test sets ``release``; ``sleepers`` counts those
    asleep now."""

    def __init__(self) -> None:
        super().__init__()
        self.release = anyio.Event()
        self.sleepers = 0

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.sleepers += 1
        try:
            await self.release.wait()
        finally:
            self.sleepers -= 1
        self.t += seconds


class VirtualClock:
    """A clock (a `batchrun.pacing.Clock`, and callable as the simulator's) whose time moves only
    in `drive`: when every other task waits, to the earliest sleeper's wake-up. Sleepers wake in
    order at their own times, so several timed loops run together as they would in real time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._seq = 0

    def now(self) -> float:
        return self.t

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        self._seq += 1
        heapq.heappush(self._sleepers, (self.t + seconds, self._seq, event))
        await event.wait()

    async def drive(self, done: Callable[[], bool]) -> None:
        """Move time on until ``done()``; while nobody sleeps, let real time pass (I/O, threads)."""
        while not done():
            await _all_waiting()
            if not self._sleepers:
                await anyio.sleep(0.001)
                continue
            self.t = max(self.t, self._sleepers[0][0])
            while self._sleepers and self._sleepers[0][0] <= self.t:
                heapq.heappop(self._sleepers)[2].set()


async def _all_waiting() -> None:
    """Yield until every other task waits on something (``anyio.wait_all_tasks_blocked`` without
    its 0.1 s naps, which would make thousands of steps take minutes)."""
    this = asyncio.current_task()
    while True:
        await asyncio.sleep(0)
        if all(task is this or (task._fut_waiter is not None and not task._fut_waiter.done())  # type: ignore[attr-defined]
               for task in asyncio.all_tasks()):
            return


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder``, checkpoints included."""
    return [path for path in folder.rglob("*") if path.is_file()]


class OnWritten:
    """A run observer that calls ``action`` once, when ``n`` lines have been written by this start
    (lines carried over from an earlier start do not count)."""

    def __init__(self, n: int, action: Callable[[], object]) -> None:
        self.n, self.action, self.done = n, action, False

    def started(self, stats: RunStats) -> None:
        pass

    def written(self, result: Result, stats: RunStats) -> None:
        if not self.done and stats.written - stats.carried_over >= self.n:
            self.done = True
            self.action()

    def retrying(self, *args: object) -> None:
        pass


def wait_for(proc: subprocess.Popen[str], text: str) -> str:
    """Read a child's stderr until a line containing ``text``; return what was read."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never appeared in:\n{''.join(seen)}")


# Runs the CLI (argv: function, calls, then batchrun's arguments) with ``os.<function>`` killing
# the process (os._exit: no cleanup, as kill -9) once it has been called ``calls`` times: for
# ``replace``, instead of the next call whose target is outside a checkpoint (a publishing
# rename); for ``link``, right after the next call. As ``<function>:SIGINT`` it sends itself
# SIGINT there instead, once (Ctrl-C at that very point), and goes on.
CRASH_DRIVER = """
import os, signal, sys
name, _, interrupt = sys.argv[1].partition(":")
limit = int(sys.argv[2])
real, count = getattr(os, name), 0
def crashing(src, dst, *args, **kwargs):
    global count
    if name == "replace" and (".checkpoint" in os.fspath(dst) or os.fspath(dst).endswith(".batch")
                              or kwargs.get("dst_dir_fd") is not None):  # within a folder held open
        return real(src, dst, *args, **kwargs)
    count += 1
    if interrupt:
        if count == limit + 1:
            os.kill(os.getpid(), getattr(signal, interrupt))
    elif count > limit:
        if name == "link":
            real(src, dst, *args, **kwargs)
        os._exit(9)
    return real(src, dst, *args, **kwargs)
setattr(os, name, crashing)
from batchrun.cli import main
main(sys.argv[3:], prog_name="batchrun")
"""


def crashing(function: str, calls: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``batchrun ARGS`` killed (or ``<function>:SIGINT``: interrupted) at its ``calls + 1``-th
    call of ``os.<function>`` (`CRASH_DRIVER`)."""
    return subprocess.run([sys.executable, "-c", CRASH_DRIVER, function, str(calls), *args],
                          check=False, capture_output=True, text=True)


def fail_replacing_onto(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """``os.replace`` fails with EIO when it would rename onto ``target``: a publish stopped
    between two of its renames."""
    real = os.replace

    def failing(src: object, dst: object, **dir_fds: int | None) -> None:
        if os.fspath(dst) == str(target):  # type: ignore[arg-type]
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(src, dst, **dir_fds)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", failing)


def without_dac_override() -> list[str]:
    """A command prefix that runs a root process without the power to ignore file modes."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not available to drop CAP_DAC_OVERRIDE")
    prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    if os.geteuid() != 0:
        return []
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.decode().strip()}")
    return prefix


def checkpoint_survivors(checkpoint: Path) -> set[str]:
    """custom_ids the checkpoint holds as finished (what a resume must not send again)."""
    done = set()
    with (checkpoint / "output.jsonl").open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break  # a line without its end may be cut short: it counts as not written
            try:
                done.add(orjson.loads(line)["custom_id"])
            except orjson.JSONDecodeError:
                break
    with (checkpoint / "journal").open("rb") as f:
        done |= {orjson.loads(entry.line)["custom_id"] for entry in journal.scan(f)}
    return done


def invoke(*args: str) -> tuple[int, str]:
    """Run the CLI in this process: its exit code and what it printed to stderr."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stderr
