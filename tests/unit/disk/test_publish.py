"""Publishing a finished output is one durable, repeatable step: a crash or an I/O error at any
point of it is completed by the next start, which sends nothing (nothing answered is paid for
twice). Real `batchrun` processes against the simulator, killed at an exact rename."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchrun.simulator import Faults, Simulator, SimulatorConfig, run_in_thread

from ...helpers import chat_line, crashing, fail_replacing_onto, read_jsonl, wait_for, write_jsonl


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with run_in_thread(SimulatorConfig(latency_ms=2)) as simulator:
        yield simulator


def batchrun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrun", *args], check=False, capture_output=True, text=True)


def rows(n: int) -> list[object]:
    """Requests; every seventh is one the endpoint answers 400 (a failed line)."""
    lines = [chat_line(i) for i in range(n)]
    for i in range(0, n, 7):
        lines[i]["body"]["messages"] = []  # type: ignore[index]
    return lines


def interrupt_with_a_prefix(args: list[str], checkpoint: Path) -> None:
    """Start ``batchrun run ARGS`` and SIGTERM it once some lines are in the ordered prefix, so
    the next start resumes (and compacts the journal to the lines past that prefix)."""
    proc = subprocess.Popen([sys.executable, "-m", "batchrun", *args, "--progress-interval", "0.05"],
                            stderr=subprocess.PIPE, text=True)
    wait_for(proc, "started:")
    prefix = checkpoint / "output.jsonl"
    while not (prefix.exists() and prefix.stat().st_size > 0):
        time.sleep(0.005)  # polling a file the run writes: no bound on how long it takes
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait() == 4, err


@pytest.mark.parametrize("renames_done", [0, 1, 2])
def test_a_crash_while_publishing_a_resumed_run_is_completed_without_sending(
        tmp_path: Path, sim: Simulator, renames_done: int) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", rows(300))
    out = tmp_path / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url, "-c", "4"]
    interrupt_with_a_prefix(args, tmp_path / "out.jsonl.checkpoint")

    crashed = crashing("replace", renames_done, *args)
    assert crashed.returncode == 9, crashed.stderr
    sent = sim.stats.requests
    assert sent >= 300

    done = batchrun(*args)
    assert done.returncode == 1, done.stderr
    assert sim.stats.requests == sent  # nothing answered was bought again
    assert [r["custom_id"] for r in read_jsonl(out)] == [f"req-{i}" for i in range(300)]
    assert [r["custom_id"] for r in read_jsonl(tmp_path / "out.errors.jsonl")] == [f"req-{i}" for i in range(0, 300, 7)]
    assert read_jsonl(out)[1]["response"]["status_code"] == 200
    assert (tmp_path / "out.report.json").exists()
    assert not (tmp_path / "out.jsonl.checkpoint").exists()
    again = batchrun(*args)
    assert again.returncode == 1 and "is up to date" in again.stderr  # its report was published with it
    assert sim.stats.requests == sent


@pytest.mark.parametrize("renames_done", [0, 1])
def test_a_crash_while_publishing_retry_failed_is_completed_without_sending(
        tmp_path: Path, sim: Simulator, renames_done: int) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", rows(100))
    out = tmp_path / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url, "-c", "4"]
    assert batchrun(*args).returncode == 1
    first = sim.stats.requests

    crashed = crashing("replace", renames_done, *args, "--retry-failed")
    assert crashed.returncode == 9, crashed.stderr
    retried = sim.stats.requests - first
    assert retried == len(range(0, 100, 7))  # only the failed lines

    done = batchrun(*args, "--retry-failed")
    assert done.returncode == 1, done.stderr
    assert sim.stats.requests == first + retried
    assert len(read_jsonl(out)) == 100 and not (tmp_path / "out.jsonl.checkpoint").exists()


@pytest.mark.parametrize("renames_done", [0, 2])
def test_ctrl_c_while_publishing_says_so_and_the_next_start_completes_it(
        tmp_path: Path, sim: Simulator, renames_done: int) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", rows(100))
    out = tmp_path / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url, "-c", "4"]
    interrupted = crashing("replace:SIGINT", renames_done, *args)
    assert interrupted.returncode == 4, interrupted.stderr
    assert ("stopped early: interrupted while publishing the output: all 100 lines are answered and kept in the "
            "checkpoint" in " ".join(interrupted.stderr.split()))  # the summary wraps at 80 columns
    assert "before any request was sent" not in interrupted.stderr and "Traceback" not in interrupted.stderr
    assert (tmp_path / "out.jsonl.checkpoint" / "committed").exists()
    sent = sim.stats.requests
    assert sent == 100

    done = batchrun(*args)
    assert done.returncode == 1, done.stderr
    assert "its output is now published; nothing to send" in done.stderr
    assert sim.stats.requests == sent
    assert [r["custom_id"] for r in read_jsonl(out)] == [f"req-{i}" for i in range(100)]
    assert not (tmp_path / "out.jsonl.checkpoint").exists()


def test_an_io_error_while_publishing_is_exit_4_and_the_next_start_completes_it(
        tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from batchrun.cli import main

    source = write_jsonl(tmp_path / "in.jsonl", rows(50))
    out = tmp_path / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url]
    fail_replacing_onto(monkeypatch, tmp_path / "out.errors.jsonl")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 4, result.stderr
    assert "I/O error while publishing the output" in result.stderr
    monkeypatch.undo()
    sent = sim.stats.requests

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.stderr
    assert sim.stats.requests == sent
    assert len(read_jsonl(tmp_path / "out.errors.jsonl")) == len(range(0, 50, 7))
    assert not (tmp_path / "out.jsonl.checkpoint").exists()


@pytest.mark.parametrize("renames_done", [1, 4, 5, 6])
def test_a_crash_while_publishing_a_label_retry_is_completed_without_sending(tmp_path: Path, renames_done: int) -> None:
    """``batchrun label --retry-failed`` renames: the requests (1); the engine's results, errors
    and report (2-4); the join's marked results, errors, and the output (5-7)."""
    samples = Path(__file__).parents[3] / "samples"
    data, template = tmp_path / "reviews.csv", tmp_path / "sentiment.txt"
    data.write_bytes((samples / "reviews.csv").read_bytes())
    template.write_bytes((samples / "sentiment.txt").read_bytes())
    out = tmp_path / "labeled.csv"
    with run_in_thread(SimulatorConfig(faults=Faults(rate_500=0.3), seed=3)) as sim:
        args = ["label", str(data), "-t", str(template), "--labels", "positive,negative,neutral", "-o", str(out),
                "--base-url", sim.base_url, "--max-attempts", "1", "--retry-failed"]
        assert batchrun(*args[:-1]).returncode == 1
        first = sim.stats.requests

        crashed = crashing("replace", renames_done, *args)
        assert crashed.returncode == 9, crashed.stderr
        retried = sim.stats.requests - first
        assert retried > 0

        done = batchrun(*args)
        assert done.returncode in (0, 1), done.stderr
        assert sim.stats.requests == first + retried  # the retried rows' answers were kept
    batch = tmp_path / "labeled.csv.batch"
    failed = len(read_jsonl(batch / "results.errors.jsonl"))
    assert done.returncode == (1 if failed else 0)
    assert f"labeled 30 rows into {out}: {30 - failed} answered" in " ".join(done.stderr.split())
    assert not (batch / "results.jsonl.checkpoint").exists()
