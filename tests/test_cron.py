"""The JSON report says how a run ended, and what it counted is a file that exists."""

from __future__ import annotations

import os
import random
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from click.testing import CliRunner

from batchrun import RunConfig, checkpoint, run_batch
from batchrun.cli import main
from batchrun.reader import jsonl_lines
from batchrun.simulator import Simulator, SimulatorConfig, run_in_thread, serve

from .helpers import chat_line, files_under, read_jsonl, write_jsonl

SAMPLES = Path(__file__).parent.parent / "samples"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stderr


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with run_in_thread(SimulatorConfig()) as simulator:
        yield simulator


def requests(path: Path, failing: tuple[int, ...] = (), n: int = 6) -> Path:
    """``n`` requests; those in ``failing`` the simulator answers 400."""
    return write_jsonl(path, [chat_line(i, messages=[]) if i in failing else chat_line(i) for i in range(n)])


def report(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in files_under(folder)}


def test_the_report_of_a_complete_run(tmp_path: Path, sim: Simulator) -> None:
    rows = [orjson.dumps(chat_line(i, messages=[]) if i == 3 else chat_line(i)) for i in range(5)]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(rows[:2]) + b"\n\n  \r\n" + b"\n".join(rows[2:]))  # blank lines, no last newline
    out = tmp_path / "out.jsonl"
    assert invoke("run", str(source), "-o", str(out), "--base-url", sim.base_url)[0] == 1
    doc = report(tmp_path / "out.report.json")
    assert {key: doc[key] for key in ("status", "exit_code", "stop_reason", "input_lines", "lines_finished", "lines")} \
        == {"status": "complete", "exit_code": 1, "stop_reason": None, "input_lines": 5, "lines_finished": 5, "lines": 5}
    assert doc["source"] == str(out) and Path(doc["source"]).exists()
    assert doc["input"]["path"] == str(source) and doc["input"]["size"] == source.stat().st_size
    assert doc["output_bytes"] == out.stat().st_size


async def test_the_report_of_a_run_stopped_by_the_budget(tmp_path: Path) -> None:
    source = Path(shutil.copy(SAMPLES / "chat.jsonl", tmp_path / "chat.jsonl"))  # 200 lines capping their output
    out = tmp_path / "capped.jsonl"
    async with serve() as server:
        stats = await run_batch(RunConfig(source, out, base_url=server.base_url, concurrency=8, max_cost=0.02))
    assert stats.exit_code == 3
    doc = report(tmp_path / "capped.report.json")
    assert doc["status"] == "budget" and doc["exit_code"] == 3 and "--max-cost" in doc["stop_reason"]
    assert doc["input_lines"] == 200 and 0 < doc["lines"] <= doc["lines_finished"] < 200
    assert doc["output_bytes"] is None
    counted = Path(doc["source"])  # not the output, which a stopped run has not published
    assert counted == tmp_path / "capped.jsonl.checkpoint" / "output.jsonl" and not out.exists()
    assert len(read_jsonl(counted)) == doc["lines"]


async def test_the_report_of_a_run_stopped_by_sigterm(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(10)])
    config = RunConfig(source, base_url="http://127.0.0.1:9/v1", concurrency=2, drain_timeout=0)

    async def endpoint(request: httpx.Request) -> httpx.Response:
        question = orjson.loads(request.content)["messages"][0]["content"]
        if question == "question 5":  # sent once line 4 is answered (the other worker is held by line 3)
            os.kill(os.getpid(), signal.SIGTERM)
        if question in ("question 3", "question 5"):
            await anyio.sleep_forever()  # in flight when the stop comes: not finished
        return httpx.Response(200, json={"model": "m", "choices": [{"message": {"content": "ok"}}]})

    stats = await run_batch(config, transport=httpx.MockTransport(endpoint), handle_signals=True)
    assert stats.exit_code == 4
    doc = report(config.report_path)
    assert {key: doc[key] for key in ("status", "exit_code", "stop_reason", "input_lines", "lines_finished", "lines")} \
        == {"status": "stopped", "exit_code": 4, "stop_reason": "interrupted by SIGTERM", "input_lines": 10,
            "lines_finished": 4, "lines": 3}  # line 4 finished too, ahead of line 3: it is kept, not counted yet
    assert doc["source"] == str(config.checkpoint_path / "output.jsonl")
    assert len(read_jsonl(Path(doc["source"]))) == 3


def test_input_lines_are_the_request_lines_wherever_chunks_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pieces = [b"\n", b"  \n", b"\r\n", b"\t \r\n", b'{"a": 1}\n', b'{"a": 1}\r\n', b"x", b"  ", b"\xef\xbb\xbf"]
    monkeypatch.setattr(checkpoint, "require_a_request", lambda f, path: None)  # lines need not be requests here
    rng = random.Random(7)
    path = tmp_path / "in.jsonl"
    for _ in range(300):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        path.write_bytes(b"\xef\xbb\xbf" + data if rng.random() < 0.3 else data)
        with path.open("rb") as f:
            expected = sum(1 for _ in jsonl_lines(f))  # what the reader makes records of
        for chunk in (3, 4, 7, 2**20):
            monkeypatch.setattr(checkpoint, "_CHUNK", chunk)
            assert checkpoint.scan_input(path).lines == expected, (data, chunk)
