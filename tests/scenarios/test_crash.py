"""Killing and stopping real `batchrun run` processes against the simulator over loopback."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from batchrun.simulator import SimulatorConfig, run_in_thread

from ..helpers import chat_line, checkpoint_survivors, read_jsonl, wait_for, write_jsonl


def start(source: Path, out: Path, base_url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun", "run", str(source), "-o", str(out), "--base-url", base_url,
         "--progress-interval", "0.05", *extra],
        stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    assert proc.stderr is not None
    with proc.stderr:
        rest = proc.stderr.read()
    return proc.wait(timeout=timeout), rest


def comparable(path: Path) -> list[dict[str, object]]:
    """Output lines without what is each run's own: the measurements (attempts, latency) and the ids."""
    return [{k: v for k, v in line.items() if k not in ("batchrun", "id")} for line in read_jsonl(path)]


def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_output(tmp_path: Path) -> None:
    n, concurrency, kills = 400, 8, 3
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(n)])
    rng = random.Random(20261126)
    out = tmp_path / "out.jsonl"
    with run_in_thread(SimulatorConfig(latency_ms=15, jitter_ms=15, seed=1)) as sim:
        for _ in range(kills):
            proc = start(source, out, sim.base_url, "-c", str(concurrency))
            wait_for(proc, "progress:")
            time.sleep(rng.uniform(0.0, 0.4))
            proc.kill()
            finish(proc)
            assert not out.exists()
        code, err = finish(start(source, out, sim.base_url, "-c", str(concurrency)))
        assert code == 0, err
        assert "resumed:" in err
        sent = sim.stats.requests
    # Only what was in flight at each kill may have been sent twice.
    assert n <= sent <= n + kills * concurrency

    reference = tmp_path / "reference.jsonl"
    with run_in_thread(SimulatorConfig(latency_ms=1, seed=1)) as sim:
        code, err = finish(start(source, reference, sim.base_url, "-c", str(concurrency)))
        assert code == 0, err
    assert comparable(out) == comparable(reference)
    assert [line["custom_id"] for line in comparable(out)] == [f"req-{i}" for i in range(n)]
    assert not (tmp_path / "out.jsonl.checkpoint").exists()


def test_after_kill_9_only_the_requests_in_flight_are_bought_again(tmp_path: Path) -> None:
    """Answers flow fast (1 ms endpoint), so at any kill some have just arrived: each must be in
    the kernel before its request stops counting as in flight. Lines sent twice, counted from the
    simulator's own request counter, are at most ``--concurrency`` per kill."""
    n, concurrency, kills = 20_000, 16, 3
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(n)])
    rng = random.Random(7)
    out = tmp_path / "out.jsonl"
    with run_in_thread(SimulatorConfig(latency_ms=1, jitter_ms=1, seed=2)) as sim:
        for kill in range(1, kills + 1):
            proc = start(source, out, sim.base_url, "-c", str(concurrency))
            wait_for(proc, "progress:")
            time.sleep(rng.uniform(0.0, 0.3))
            proc.kill()
            finish(proc)
            # Requests of the dead process still on their way count late, so this is never above
            # the true number of lines sent and not kept; that is at most what was in flight.
            kept = len(checkpoint_survivors(tmp_path / "out.jsonl.checkpoint"))
            assert 0 < kept < n
            assert sim.stats.requests - kept <= kill * concurrency
        code, err = finish(start(source, out, sim.base_url, "-c", str(concurrency)), timeout=120)
        assert code == 0, err
        sent_twice = sim.stats.requests - n
    assert 0 <= sent_twice <= kills * concurrency
    assert [line["custom_id"] for line in read_jsonl(out)] == [f"req-{i}" for i in range(n)]


def test_sigterm_drains_in_flight_requests_and_loses_none(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(60)])
    out = tmp_path / "out.jsonl"
    with run_in_thread(SimulatorConfig(latency_ms=400)) as sim:
        proc = start(source, out, sim.base_url, "-c", "4")
        wait_for(proc, "started:")
        while sim.stats.requests < 4:  # the pool's four requests are in flight (400 ms each)
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
        answered = sum(sim.stats.responses.values())
        assert code == 4 and "SIGTERM: no new requests" in err and "interrupted by SIGTERM" in err
        checkpoint = tmp_path / "out.jsonl.checkpoint"
        # Every request the endpoint answered is on disk: nothing paid for is lost.
        assert len(checkpoint_survivors(checkpoint)) == answered > 0

        code, err = finish(start(source, out, sim.base_url, "-c", "4", "--drain-timeout", "1"))
        assert code == 0, err
        assert sim.stats.requests == 60  # drained requests were not sent again
    assert [line["custom_id"] for line in read_jsonl(out)] == [f"req-{i}" for i in range(60)]


def test_a_second_signal_cancels_requests_in_flight(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(20)])
    out = tmp_path / "out.jsonl"
    with run_in_thread(SimulatorConfig(latency_ms=10_000)) as sim:
        proc = start(source, out, sim.base_url, "-c", "4")
        wait_for(proc, "started:")
        while sim.stats.requests < 4:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        wait_for(proc, "SIGINT: no new requests")
        proc.send_signal(signal.SIGINT)
        code, err = finish(proc)
        # Answers take 10 s: had the four not been cancelled, they would be in the journal.
        assert code == 4 and "cancelling 4 requests in flight" in err
    assert checkpoint_survivors(tmp_path / "out.jsonl.checkpoint") == set()
    assert orjson.loads((tmp_path / "out.jsonl.checkpoint" / "meta.json").read_bytes())["input"]["size"] > 0
