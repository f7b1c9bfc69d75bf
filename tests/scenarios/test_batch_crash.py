"""``kill -9`` at each step of a ``--via batch`` run, then the same command again: every line is
answered once, and no batch is submitted twice (the simulator counts what was created)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchrun.simulator import Batches, Simulator, SimulatorConfig, run_in_thread
from tests.helpers import chat_line, read_jsonl, write_jsonl

# Kill the process (exit status 9, as if by SIGKILL: nothing runs after) around the N-th call of
# a function: ``module:Class.method`` or ``module:function``, ``before`` or ``after`` it returns,
# only for calls whose arguments mention MATCH when one is given.
KILL_DRIVER = """
import functools, importlib, inspect, os, sys
target, when, nth, match = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
module_name, _, attr = target.partition(":")
owner = importlib.import_module(module_name)
*path, name = attr.split(".")
for part in path:
    owner = getattr(owner, part)
real = getattr(owner, name)
count = 0

def due(args, kwargs):
    global count
    if match and match not in repr((args, kwargs)):
        return False
    count += 1
    return count == nth

if inspect.iscoroutinefunction(real):
    @functools.wraps(real)
    async def wrapper(*args, **kwargs):
        hit = due(args, kwargs)
        if hit and when == "before":
            os._exit(9)
        result = await real(*args, **kwargs)
        if hit:
            os._exit(9)
        return result
else:
    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        hit = due(args, kwargs)
        if hit and when == "before":
            os._exit(9)
        result = real(*args, **kwargs)
        if hit:
            os._exit(9)
        return result
setattr(owner, name, wrapper)
from batchrun.cli import main
main(sys.argv[5:], prog_name="batchrun")
"""

LINES = 12  # two models: two batches


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with run_in_thread(SimulatorConfig(batches=Batches(seconds_per_request=0.01))) as simulator:
        yield simulator


def batchrun(sim: Simulator, tmp_path: Path, *kill: str) -> subprocess.CompletedProcess[str]:
    """``batchrun run --via batch`` on ``in.jsonl``; with ``kill``: the driver's four arguments
    (`KILL_DRIVER`), else more options (``--cancel``)."""
    args = ["run", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--via", "batch",
            "--base-url", sim.base_url, "--poll-interval", "0.05", "-q"]
    if len(kill) == len(STEPS["polling"]):  # the driver's arguments
        command = [sys.executable, "-c", KILL_DRIVER, *kill, *args]
    else:
        command = [sys.executable, "-m", "batchrun", *args, *kill]
    return subprocess.run(command, check=False, capture_output=True, text=True)


STEPS = {
    "planned, nothing uploaded": ("batchrun.batchapi.ledger:Ledger.save", "after", "1", ""),
    "mid-upload: the file is at the provider, its id not recorded": (
        "batchrun.batchapi.api:BatchApi.upload", "after", "1", ""),
    "the first batch created, its id not recorded": ("batchrun.batchapi.api:BatchApi.create_batch", "after", "1", ""),
    "the second batch created, its id not recorded": (
        "batchrun.batchapi.api:BatchApi.create_batch", "after", "2", ""),
    "polling": ("batchrun.batchapi.api:BatchApi.retrieve", "after", "1", ""),
    "mid-download": ("batchrun.batchapi.api:BatchApi._attempt", "after", "1", "/content"),
    "downloaded and put in order, not recorded": ("batchrun.batchapi.answers:order", "after", "1", ""),
    "writing the output": ("batchrun.disk.writer:OrderedWriter.add", "after", "5", ""),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_killed_then_run_again_answers_every_line_once_and_submits_nothing_twice(
        sim: Simulator, tmp_path: Path, step: str) -> None:
    models = ("gpt-4o-mini", "gpt-4o")
    write_jsonl(tmp_path / "in.jsonl", [chat_line(i, model=models[i % 2]) for i in range(LINES)])
    created, uploaded = sim.stats.batches_created, sim.stats.files_uploaded

    killed = batchrun(sim, tmp_path, *STEPS[step])
    assert killed.returncode == 9, killed.stderr
    again = batchrun(sim, tmp_path)
    assert again.returncode == 0, again.stderr

    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["custom_id"] for r in out] == [f"req-{i}" for i in range(LINES)]
    assert all(r["error"] is None and r["batchrun"]["batch_id"] for r in out)
    assert sim.stats.batches_created - created == 2
    # A file whose id was lost is uploaded again (an unused file costs nothing); no other is.
    assert sim.stats.files_uploaded - uploaded == 2 + (step.startswith("mid-upload"))
    assert not (tmp_path / "out.jsonl.batches").exists()


def test_cancel_after_a_kill_between_create_and_record_cancels_the_batch_it_finds(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(LINES)])
    with run_in_thread(SimulatorConfig(batches=Batches(seconds_per_request=5.0))) as slow:
        killed = batchrun(slow, tmp_path, "batchrun.batchapi.api:BatchApi.create_batch", "after", "1", "")
        assert killed.returncode == 9, killed.stderr
        cancelled = batchrun(slow, tmp_path, "--cancel")
        assert cancelled.returncode == 1, cancelled.stderr
        assert (slow.stats.batches_created, slow.stats.batches_cancelled) == (1, 1)
    codes = {record["error"]["code"] for record in read_jsonl(tmp_path / "out.jsonl") if record["error"]}
    assert codes == {"batch_cancelled"}
