"""``batchrun mock-server``'s Batch API options reach the simulator it serves."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import chat_line, read_jsonl, write_jsonl


@contextlib.contextmanager
def mock_server(*flags: str) -> Iterator[str]:
    """``batchrun mock-server`` with ``flags`` in a process of its own: its base URL. Ctrl-C ends
    it, cleanly, when the block does."""
    server = subprocess.Popen([sys.executable, "-m", "batchrun", "mock-server", "--port", "0", *flags],
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert server.stderr is not None
        yield server.stderr.readline().split()[3]
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0
    finally:
        server.kill()
        server.wait()
        if server.stderr is not None:
            server.stderr.close()


def run_via_batch(source: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrun", "run", str(source), "--base-url", base_url,
                           "--via", "batch", "--poll-interval", "0.05", "-q"], capture_output=True, text=True,
                          check=False)


def test_batch_options_shape_the_batches_it_serves(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(6)])
    with mock_server("--batch-rate-lost", "1", "--batch-seconds-per-request", "0") as base_url:
        run = run_via_batch(source, base_url)
        assert run.returncode == 1, run.stderr
    codes = {record["error"]["code"] for record in read_jsonl(tmp_path / "in.results.jsonl")}
    assert codes == {"batch_result_missing"}  # every line lost, as --batch-rate-lost 1 says


def test_a_batch_queue_limit_refuses_a_batch_over_it(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, max_tokens=10) for i in range(3)])
    with mock_server("--batch-queue-tokens", "20") as base_url:
        run = run_via_batch(source, base_url)
    # The one batch alone is over the limit the refusal states: it would never be accepted.
    assert run.returncode == 4, run.stderr
    assert "Limit: 20 enqueued tokens" in run.stderr and "--restart --batch-queue-tokens 20" in run.stderr
    assert not (tmp_path / "in.results.jsonl").exists()
