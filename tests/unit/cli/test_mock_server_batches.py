"""``batchrun mock-server``'s Batch API options reach the simulator it serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import chat_line, read_jsonl, write_jsonl


def test_batch_options_shape_the_batches_it_serves(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(6)])
    server = subprocess.Popen([sys.executable, "-m", "batchrun", "mock-server", "--port", "0",
                               "--batch-rate-lost", "1", "--batch-seconds-per-request", "0"],
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert server.stderr is not None
        base_url = server.stderr.readline().split()[3]
        run = subprocess.run([sys.executable, "-m", "batchrun", "run", str(source), "--base-url", base_url,
                              "--via", "batch", "--poll-interval", "0.05", "-q"], capture_output=True, text=True,
                             check=False)
        assert run.returncode == 1, run.stderr
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0
    finally:
        server.kill()
        server.wait()
        if server.stderr is not None:
            server.stderr.close()
    codes = {record["error"]["code"] for record in read_jsonl(tmp_path / "in.results.jsonl")}
    assert codes == {"batch_result_missing"}  # every line lost, as --batch-rate-lost 1 says
