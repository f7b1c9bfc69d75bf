"""What a run leaves on disk when things go wrong around it: a crash at the start of
--retry-failed, an input that grows while it is read, a disk that fails in the periodic fsync,
paths that are one another, a refused start."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from batchrun import RunConfig, run_batch
from batchrun.engine import run as engine
from batchrun.simulator import Simulator

from ..helpers import (
    OnWritten,
    chat_line,
    crashing,
    fail_replacing_onto,
    files_under,
    invoke,
    read_jsonl,
    write_jsonl,
)

BASE = "http://127.0.0.1:9/v1"


class Endpoint:
    """Answers every request; ``fail`` answers 400; records what it was sent."""

    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.fail = fail
        self.sent: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        text = orjson.loads(request.content)["messages"][0]["content"]
        self.sent.append(text)
        if text in self.fail:
            return httpx.Response(400, json={"error": {"message": "no", "code": "bad"}})
        return httpx.Response(200, json={"model": "m", "choices": [], "answer": text})




def test_a_crash_right_after_retry_failed_links_the_previous_output_does_not_wedge_it(
        tmp_path: Path, sim: Simulator) -> None:
    rows = [chat_line(i) for i in range(20)]
    rows[5]["body"]["messages"] = []  # type: ignore[index]  # answered 400: a failed line
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url]
    assert invoke(*args)[0] == 1
    sent = sim.stats.requests

    crashed = crashing("link", 0, *args, "--retry-failed")  # dies between the link and meta.json
    assert crashed.returncode == 9, crashed.stderr
    assert (tmp_path / "out.jsonl.checkpoint" / "previous.jsonl").exists()

    code, err = invoke(*args, "--retry-failed")
    assert code == 1, err
    assert sim.stats.requests == sent + 1  # the failed line, once more
    assert len(read_jsonl(out)) == 20 and not (tmp_path / "out.jsonl.checkpoint").exists()


async def test_lines_appended_while_the_input_is_read_are_not_run(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, "q" * 200) for i in range(300)])
    fingerprinted = source.read_bytes()

    def append() -> None:
        with source.open("ab") as f:
            f.write(b"".join(orjson.dumps(chat_line(i)) + b"\n" for i in range(300, 310)))

    endpoint = Endpoint()
    config = RunConfig(source, base_url=BASE, concurrency=2, window=2)  # the reader stays just ahead
    stats = await run_batch(config, transport=httpx.MockTransport(endpoint), observer=OnWritten(1, append))
    assert stats.exit_code == 0
    assert source.read_bytes().startswith(fingerprinted) and len(source.read_bytes()) > len(fingerprinted)
    assert [o["custom_id"] for o in read_jsonl(config.out)] == [f"req-{i}" for i in range(300)]
    assert len(endpoint.sent) == 300


async def test_a_disk_error_in_the_periodic_fsync_is_a_resumable_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(30)])
    config = RunConfig(source, base_url=BASE, concurrency=4)
    tried = threading.Event()

    def failing_fsync(fds: list[int]) -> None:
        tried.set()
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    async def held_until_a_sync(request: httpx.Request) -> httpx.Response:
        await anyio.to_thread.run_sync(tried.wait)  # the periodic fsync has failed by now
        return Endpoint()(request)

    monkeypatch.setattr(engine, "SYNC_INTERVAL", 0)
    monkeypatch.setattr(engine, "_fsync_all", failing_fsync)
    stats = await run_batch(config, transport=httpx.MockTransport(held_until_a_sync))
    assert stats.exit_code == 4
    assert "I/O error while saving to disk" in (stats.stop_reason or "") and "Input/output error" in stats.stop_reason
    assert (tmp_path / "in.results.jsonl.checkpoint" / "meta.json").exists()

    monkeypatch.undo()
    stats = await run_batch(config, transport=httpx.MockTransport(Endpoint()))
    assert stats.exit_code == 0
    assert [o["custom_id"] for o in read_jsonl(config.out)] == [f"req-{i}" for i in range(30)]


@pytest.mark.parametrize(("source_name", "output_name"), [
    ("x.errors.jsonl", "x.jsonl"),  # the errors file would be the input
    ("x.report.json", "x.jsonl"),  # the report would be the input
    ("x-errors.jsonl", "x"),
    ("x.jsonl.checkpoint", "x.jsonl"),
])
def test_no_file_of_a_run_may_be_its_input(tmp_path: Path, sim: Simulator, source_name: str, output_name: str) -> None:
    source = write_jsonl(tmp_path / source_name, [chat_line(i) for i in range(3)])
    before = source.read_bytes()
    code, err = invoke("run", str(source), "-o", str(tmp_path / output_name), "--base-url", sim.base_url)
    assert code == 2 and f"is the input file {source}" in err
    assert source.read_bytes() == before and sim.stats.requests == 0
    assert files_under(tmp_path) == [source]


def test_no_file_of_a_run_may_be_its_input_through_a_link(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    (tmp_path / "out.errors.jsonl").symlink_to(source)
    (tmp_path / "o2.report.json").hardlink_to(source)
    for out in ("out.jsonl", "o2.jsonl"):
        code, err = invoke("run", str(source), "-o", str(tmp_path / out), "--base-url", sim.base_url)
        assert code == 2 and "is the input file" in err, err
    assert read_jsonl(source) == [chat_line(0)] and sim.stats.requests == 0


def test_out_and_out_jsonl_share_no_file(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    for out in ("out", "out.jsonl"):
        code, err = invoke("run", str(source), "-o", str(tmp_path / out), "--base-url", sim.base_url)
        assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.jsonl", "out", "out-errors.jsonl", "out-report.json", "out.errors.jsonl", "out.jsonl", "out.report.json"]


def test_a_refused_start_leaves_nothing_behind(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    args = ["run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url]
    assert invoke(*args)[0] == 0
    write_jsonl(source, [chat_line(i) for i in range(4)])
    before = {path: path.read_bytes() for path in files_under(tmp_path)}
    code, err = invoke(*args)
    assert code == 2 and "holds a finished run of another input" in err
    assert {path: path.read_bytes() for path in files_under(tmp_path)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in before)


def test_a_start_that_cannot_finish_publishing_says_so_and_sends_nothing(
        tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    args = ["run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url]
    fail_replacing_onto(monkeypatch, tmp_path / "out.errors.jsonl")
    assert invoke(*args)[0] == 4  # committed, the output renamed, the errors file not
    code, err = invoke(*args)
    assert code == 2 and "could not finish publishing the finished run" in err and "Input/output error" in err
    monkeypatch.undo()
    assert sim.stats.requests == 5
    assert invoke(*args)[0] == 0 and sim.stats.requests == 5
    assert not (tmp_path / "out.jsonl.checkpoint").exists() and (tmp_path / "out.errors.jsonl").exists()


# batchrun ARGS, killed (os._exit: as kill -9) when publishing has removed the checkpoint's
# record and is about to remove the emptied folder.
KILLED_AS_THE_CHECKPOINT_IS_REMOVED = """
import os, shutil, sys
real = shutil.rmtree
def rmtree(path, *args, **kwargs):
    if os.fspath(path).endswith(".checkpoint"):
        os._exit(9)
    return real(path, *args, **kwargs)
shutil.rmtree = rmtree
from batchrun.cli import main
main(sys.argv[1:], prog_name="batchrun")
"""


def test_a_crash_at_the_very_end_of_publishing_leaves_no_checkpoint_for_ever(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    out = tmp_path / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url]
    crashed = subprocess.run([sys.executable, "-c", KILLED_AS_THE_CHECKPOINT_IS_REMOVED, *args],
                             check=False, capture_output=True, text=True)
    assert crashed.returncode == 9, crashed.stderr
    checkpoint = tmp_path / "out.jsonl.checkpoint"
    assert checkpoint.is_dir() and not (checkpoint / "committed").exists()
    assert len(read_jsonl(out)) == 5 and sim.stats.requests == 5

    code, err = invoke(*args)
    assert code == 0 and "is up to date" in err, err
    assert not checkpoint.exists() and sim.stats.requests == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.errors.jsonl", "out.jsonl", "out.report.json"]


def test_an_empty_checkpoint_is_removed_by_a_refused_start_too(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    args = ["run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url]
    assert invoke(*args)[0] == 0
    (tmp_path / "out.jsonl.checkpoint").mkdir(mode=0o700)
    (tmp_path / "out.jsonl.checkpoint" / "lock").touch(mode=0o600)
    write_jsonl(source, [chat_line(i) for i in range(4)])
    code, err = invoke(*args)
    assert code == 2 and "holds a finished run of another input" in err
    assert not (tmp_path / "out.jsonl.checkpoint").exists() and sim.stats.requests == 3
