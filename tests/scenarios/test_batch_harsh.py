"""``--via batch`` against a Batch API that misbehaves: failing calls, failed and lost lines, a
batch failed whole, a key to keep secret, refused restarts, Ctrl-C, a deadline already past.

In process, the simulator runs on a clock of its own (`SimClock`) that only the run's sleeps
move on (tests/batchworld.py); the Ctrl-C test runs the CLI against the simulator on the real clock.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchrun.batchapi.options import BatchLimits, BatchOptions
from batchrun.batchapi.pending import Pending
from batchrun.config import ApiKey, RetryPolicy
from batchrun.errors import ConfigError
from batchrun.simulator import Batches, Faults, Simulator, SimulatorConfig, run_in_thread
from batchrun.stats import RunStats
from tests.batchworld import FAST, lines, world
from tests.helpers import chat_line, files_under, read_jsonl, wait_for, write_jsonl

QUICK_RETRIES = RetryPolicy(max_attempts=12, backoff_base=0.05, backoff_max=0.5)


def finished(stats: RunStats | Pending) -> RunStats:
    assert isinstance(stats, RunStats), stats
    return stats


def batch_of(record: dict[str, Any]) -> str | None:
    batch_id: str | None = record["batchrun"].get("batch_id")
    return batch_id


def newest_batch(sim: Simulator) -> dict[str, Any]:
    """The simulator's last batch, as the provider lists it."""
    with urllib.request.urlopen(f"{sim.base_url}/batches?limit=1") as reply:
        batch: dict[str, Any] = orjson.loads(reply.read())["data"][0]
    return batch


def code(record: dict[str, Any]) -> str | None:
    error = record["error"] or record["batchrun"].get("error")
    return None if error is None else str(error["code"])


def test_failing_batch_api_calls_are_retried_and_no_batch_is_created_twice(tmp_path: Path) -> None:
    models = ("gpt-4o-mini", "gpt-4o")
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, model=models[i % 2]) for i in range(30)])
    out = tmp_path / "out.jsonl"
    options = BatchOptions(BatchLimits(max_requests=5), poll_interval=30.0)
    # A truncated reply has been answered whole by the server: a POST /batches cut short created its batch.
    faults = Faults(rate_500=0.2, rate_drop=0.15, rate_truncate=0.15)
    with world(faults, seconds_per_request=0.2) as w:
        stats = finished(w.run(path, out, options, retry=QUICK_RETRIES))
        created, sim_stats = w.sim.stats.batches_created, w.sim.stats
    assert stats.exit_code == 0
    assert sim_stats.truncations > 0 and sim_stats.drops > 0 and any(status >= 500 for status in sim_stats.responses)
    records = read_jsonl(out)
    assert [r["custom_id"] for r in records] == [f"req-{i}" for i in range(30)]
    assert all(r["error"] is None and r["response"]["status_code"] == 200 for r in records)
    assert created == len({batch_of(r) for r in records}) == 6  # 15 lines a model, 5 a batch
    assert not (tmp_path / "out.jsonl.batches").exists()


def test_a_garbled_download_is_downloaded_again_not_read_as_lines_left_unanswered(tmp_path: Path) -> None:
    path = lines(tmp_path, 12)
    out = tmp_path / "out.jsonl"
    # A malformed fault answers 200 with the start of a JSON document: as an output file, garbage
    # (at this share and the default seed, the first download of the output file gets one).
    with world(Faults(rate_malformed=0.7), seconds_per_request=0.2) as w:
        stats = finished(w.run(path, out, FAST, retry=QUICK_RETRIES))
        assert w.sim.stats.malformed > 0
    assert stats.exit_code == 0
    assert all(r["error"] is None and batch_of(r) for r in read_jsonl(out))


def test_lines_failed_in_a_batch_keep_their_error_records_and_retry_failed_resubmits_only_them(
        tmp_path: Path) -> None:
    path = lines(tmp_path, 30)
    out = tmp_path / "out.jsonl"
    with world(rate_failed=0.3, failed_status=500) as w:
        stats = finished(w.run(path, out))
        assert stats.exit_code == 1
        first = read_jsonl(out)
        failed = [r for r in first if code(r) is not None]
        assert 0 < len(failed) < 30
        for record in failed:
            assert record["response"]["status_code"] == 500
            assert record["error"] is None
            assert record["batchrun"]["error"]["code"]
        assert read_jsonl(tmp_path / "out.errors.jsonl") == failed

        again = finished(w.run(path, out, FAST, retry_failed=True))
        assert w.sim.stats.batches_created == 2
        assert newest_batch(w.sim)["request_counts"]["total"] == len(failed)
    final = read_jsonl(out)
    assert [r["custom_id"] for r in final] == [f"req-{i}" for i in range(30)]
    (old,) = {batch_of(r) for r in first}
    resubmitted = [r["custom_id"] for r in final if batch_of(r) != old]
    assert resubmitted == [r["custom_id"] for r in failed]
    assert [r for r in final if batch_of(r) == old] == [r for r in first if code(r) is None]
    assert again.exit_code == (1 if any(code(r) for r in final) else 0)


def test_lost_lines_are_batch_result_missing_and_retry_failed_resubmits_them(tmp_path: Path) -> None:
    path = lines(tmp_path, 30)
    out = tmp_path / "out.jsonl"
    with world(rate_lost=0.25) as w:
        stats = finished(w.run(path, out))
        assert stats.exit_code == 1
        first = read_jsonl(out)
        lost = [r for r in first if r["error"] is not None]
        assert 0 < len(lost) < 30
        assert {r["error"]["code"] for r in lost} == {"batch_result_missing"}
        assert all(r["response"] is None for r in lost)
        assert read_jsonl(tmp_path / "out.errors.jsonl") == lost

        finished(w.run(path, out, FAST, retry_failed=True))
        assert w.sim.stats.batches_created == 2
        assert newest_batch(w.sim)["request_counts"]["total"] == len(lost)
    final = read_jsonl(out)
    (old,) = {batch_of(r) for r in first}
    assert [r["custom_id"] for r in final if batch_of(r) != old] == [r["custom_id"] for r in lost]


def test_a_batch_the_provider_fails_whole_fails_its_lines_only_with_the_providers_reason(tmp_path: Path) -> None:
    path = lines(tmp_path, 12)
    out = tmp_path / "out.jsonl"
    options = BatchOptions(BatchLimits(max_requests=8), poll_interval=30.0)  # 8 + 4 lines
    with world(max_requests=5) as w:
        stats = finished(w.run(path, out, options))
        assert w.sim.stats.batches_created == 2
    assert stats.exit_code == 1
    records = read_jsonl(out)
    assert [r["custom_id"] for r in records] == [f"req-{i}" for i in range(12)]
    for record in records[:8]:
        assert record["error"]["code"] == "batch_failed"
        assert "a batch may have at most 5" in record["error"]["message"]
    assert all(r["error"] is None and r["response"]["status_code"] == 200 for r in records[8:])
    assert read_jsonl(tmp_path / "out.errors.jsonl") == records[:8]


KEY = "sk-harsh-0123456789abcdefSECRET"
WRONG = "sk-wrong-key-0000"


def no_key_under(folder: Path) -> None:
    for path in files_under(folder):
        content = path.read_bytes()
        assert KEY.encode() not in content and WRONG.encode() not in content, path


def test_the_key_a_provider_requires_is_sent_and_written_nowhere(tmp_path: Path) -> None:
    path = lines(tmp_path, 10)
    out = tmp_path / "out.jsonl"
    with world(Faults(require_api_key=KEY), seconds_per_request=100.0) as w:
        wrong = w.run(path, tmp_path / "wrong.jsonl", FAST, api_key=ApiKey(WRONG))
        assert isinstance(wrong, Pending) and "rejected the credentials" in wrong.message
        assert WRONG not in wrong.message
        assert w.sim.stats.files_uploaded == 0

        detached = w.run(path, out, BatchOptions(detach=True), api_key=ApiKey(KEY))
        assert isinstance(detached, Pending) and detached.exit_code == 0
        assert (tmp_path / "out.jsonl.batches" / "ledger.json").exists()
        no_key_under(tmp_path)  # the ledger, request files and checkpoint of a run in flight

        w.clock.now += 2000
        stats = finished(w.run(path, out, FAST, api_key=ApiKey(KEY)))
        assert w.sim.stats.batches_created == 1
    assert stats.exit_code == 0
    assert all(r["error"] is None for r in read_jsonl(out))
    no_key_under(tmp_path)


def test_restart_with_batches_in_flight_and_a_changed_input_are_refused_sending_nothing(tmp_path: Path) -> None:
    path = lines(tmp_path, 10)
    out = tmp_path / "out.jsonl"
    with world(seconds_per_request=100.0) as w:
        assert isinstance(w.run(path, out, BatchOptions(detach=True)), Pending)
        before = (w.sim.stats.files_uploaded, w.sim.stats.batches_created, w.sim.stats.requests)
        with pytest.raises(ConfigError, match="--cancel"):
            w.run(path, out, FAST, restart=True)
        lines(tmp_path, 11)
        with pytest.raises(ConfigError, match="another input"):
            w.run(path, out, FAST)
        assert (w.sim.stats.files_uploaded, w.sim.stats.batches_created, w.sim.stats.requests) == before


def test_ctrl_c_while_polling_leaves_the_batches_at_the_provider_and_a_rerun_collects(tmp_path: Path) -> None:
    path = lines(tmp_path, 8)
    out = tmp_path / "out.jsonl"
    with run_in_thread(SimulatorConfig(batches=Batches(seconds_per_request=0.25))) as sim:
        command = [sys.executable, "-m", "batchrun", "run", str(path), "-o", str(out), "--via", "batch",
                   "--base-url", sim.base_url, "--poll-interval", "0.2"]
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        try:
            seen = wait_for(proc, "submitted batch")
            seen += wait_for(proc, "requests answered")
            proc.send_signal(signal.SIGINT)
            rest = proc.communicate(timeout=60)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 4, seen + rest
        assert "batches: 1 in_progress; " in seen and " of 8 requests answered" in seen
        assert "go on there" in rest and "run the same command again" in rest and "--cancel" in rest
        assert not out.exists()
        assert sim.stats.batches_created == 1

        again = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert sim.stats.batches_created == 1
    records = read_jsonl(out)
    assert [r["custom_id"] for r in records] == [f"req-{i}" for i in range(8)]
    assert all(r["error"] is None and batch_of(r) for r in records)


def test_a_deadline_already_past_sends_every_line_online_and_uploads_nothing(tmp_path: Path) -> None:
    path = lines(tmp_path, 10)
    out = tmp_path / "out.jsonl"
    with world() as w:
        stats = finished(w.run(path, out, BatchOptions(deadline=0.0, poll_interval=30.0)))
        assert (w.sim.stats.files_uploaded, w.sim.stats.batches_created) == (0, 0)
        assert w.sim.stats.responses.get(200) == 10  # the ten lines, online
    assert stats.exit_code == 0
    records = read_jsonl(out)
    assert [r["custom_id"] for r in records] == [f"req-{i}" for i in range(10)]
    assert all(r["error"] is None and batch_of(r) is None and r["batchrun"]["latency_ms"] is not None
               for r in records)
    assert not (tmp_path / "out.jsonl.batches").exists()
