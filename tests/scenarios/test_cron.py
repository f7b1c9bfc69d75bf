"""Cron runs the same command again: a finished output is up to date (nothing is sent, the exit
code is that run's), a changed input or option over one is refused; the JSON report says how a
run ended, and what it counted is a file that exists."""

from __future__ import annotations

import os
import random
import shutil
import signal
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from batchrun import RunConfig, run_batch
from batchrun.disk import identity
from batchrun.reader import jsonl_lines
from batchrun.simulator import Simulator, serve

from ..helpers import chat_line, files_under, invoke, read_jsonl, write_jsonl

SAMPLES = Path(__file__).parents[2] / "samples"




def requests(path: Path, failing: tuple[int, ...] = (), n: int = 6) -> Path:
    """``n`` requests; those in ``failing`` the simulator answers 400."""
    return write_jsonl(path, [chat_line(i, messages=[]) if i in failing else chat_line(i) for i in range(n)])


def report(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in files_under(folder)}


@pytest.mark.parametrize(("failing", "code"), [((), 0), ((2, 4), 1)], ids=["all-succeeded", "some-failed"])
def test_a_finished_output_is_up_to_date_sends_nothing_and_exits_as_its_run_did(
        tmp_path: Path, sim: Simulator, failing: tuple[int, ...], code: int) -> None:
    source = requests(tmp_path / "in.jsonl", failing)
    out = tmp_path / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url]
    assert invoke(*args)[0] == code
    sent, before = sim.stats.requests, snapshot(tmp_path)

    again, err = invoke(*args)
    assert again == code
    assert sim.stats.requests == sent  # nothing was sent
    assert err.splitlines() == [
        f"batchrun: {out} is up to date: this input already ran to completion with these options "
        f"(6 lines{f', {len(failing)} failed' if failing else ''}; report: {tmp_path / 'out.report.json'}); "
        "nothing was sent"]
    assert snapshot(tmp_path) == before  # no file written, no checkpoint left behind

    quiet, err = invoke(*args, "-q")
    assert quiet == code and len(err.splitlines()) == (1 if code else 0)
    assert sim.stats.requests == sent


def test_a_changed_input_or_option_over_a_finished_output_is_refused_naming_restart(tmp_path: Path,
                                                                                   sim: Simulator) -> None:
    source = requests(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url]
    assert invoke(*args)[0] == 0
    sent = sim.stats.requests

    requests(source, n=7)  # cron's input grew since the output was finished
    before = snapshot(tmp_path)
    del before[source]
    code, err = invoke(*args)
    assert code == 2 and f"{out} holds a finished run of another input or options: the input file changed" in err
    assert "--restart" in err
    code, err = invoke("run", str(source), "-o", str(out), "--mock")
    assert code == 2 and "the input file changed" in err and "--restart" in err
    assert snapshot(tmp_path) == {**before, source: source.read_bytes()} and sim.stats.requests == sent

    requests(source)  # the original input again, with another endpoint
    code, err = invoke("run", str(source), "-o", str(out), "--mock")
    assert code == 2 and "options changed (base_url" in err and "--restart" in err
    assert snapshot(tmp_path) == {**before, source: source.read_bytes()}

    assert invoke(*args, "--restart", "--base-url", sim.base_url)[0] == 0
    assert sim.stats.requests == sent + 6


def test_an_output_its_report_does_not_describe_is_not_up_to_date(tmp_path: Path, sim: Simulator) -> None:
    source = requests(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url]
    assert invoke(*args)[0] == 0
    out.write_bytes(out.read_bytes()[: -1])  # something else wrote the output since
    code, err = invoke(*args)
    assert code == 2 and "already holds a finished run: pass --retry-failed" in err and "--restart" in err


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
    monkeypatch.setattr(identity, "require_a_request", lambda f, path: None)  # lines need not be requests here
    rng = random.Random(7)
    path = tmp_path / "in.jsonl"
    for _ in range(300):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        path.write_bytes(b"\xef\xbb\xbf" + data if rng.random() < 0.3 else data)
        with path.open("rb") as f:
            expected = sum(1 for _ in jsonl_lines(f))  # what the reader makes records of
        for chunk in (3, 4, 7, 2**20):
            monkeypatch.setattr(identity, "_CHUNK", chunk)
            assert identity.scan_input(path).lines == expected, (data, chunk)
