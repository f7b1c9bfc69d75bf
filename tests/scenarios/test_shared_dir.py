"""An output in a directory other users can write in: what they could leave there beforehand —
a checkpoint, a symlink at a name batchrun writes, a symlink at the output — reads nothing of the
run and overwrites nothing of the user's."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from batchrun import RunConfig, run_batch
from batchrun.disk import publish
from batchrun.engine import run as engine
from batchrun.errors import ConfigError
from batchrun.simulator import Simulator

from ..helpers import OnWritten, chat_line, fail_replacing_onto, invoke, read_jsonl, write_jsonl

BASE = "http://127.0.0.1:9/v1"
OTHER_UID = 65534  # nobody
SECRET = b"the victim's own file\n"


async def answer(request: httpx.Request) -> httpx.Response:
    """Lines finish a millisecond apart, so a run stopped after some leaves others undone."""
    text = orjson.loads(request.content)["messages"][0]["content"]
    await anyio.sleep(0.001 * int(text.split()[1]))
    if text == "question 3":
        return httpx.Response(400, json={"error": {"message": "no", "code": "bad"}})
    return httpx.Response(200, json={"model": "m", "choices": [{"message": {"content": text.upper()}}],
                                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})



def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)



@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(40)])


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "home" / ".bashrc"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


async def interrupted(config: RunConfig, after: int = 10) -> None:
    with anyio.CancelScope() as scope:
        await run_batch(config, transport=httpx.MockTransport(answer), observer=OnWritten(after, scope.cancel))


@pytest.mark.usefixtures("permissive_umask")
async def test_the_checkpoint_is_private_and_the_outputs_follow_the_umask(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "SYNC_INTERVAL", 0)  # prefix.json is written too
    config = RunConfig(source, base_url=BASE, output_path=tmp_path / "out.jsonl", concurrency=4)
    checkpoint = config.checkpoint_path
    await interrupted(config)
    assert mode(checkpoint) == 0o700
    files = {path.name: mode(path) for path in checkpoint.iterdir()}
    assert {"lock", "meta.json", "output.jsonl", "errors.jsonl", "journal", "prefix.json"} <= set(files)
    assert set(files.values()) == {0o600}, files

    # Publishing stopped after its first rename: the record and the report are in the checkpoint.
    with monkeypatch.context() as failing:
        fail_replacing_onto(failing, tmp_path / "out.errors.jsonl")
        stats = await run_batch(config, transport=httpx.MockTransport(answer))
    assert "I/O error while publishing" in (stats.stop_reason or "")
    files = {path.name: mode(path) for path in checkpoint.iterdir()}
    assert {"committed", "report.json", "errors.jsonl"} <= set(files)
    # The file whose rename failed already has its published permissions; the directory is 0700.
    assert {name for name, bits in files.items() if bits != 0o600} == {"errors.jsonl"}, files
    assert mode(checkpoint) == 0o700

    await run_batch(config, transport=httpx.MockTransport(answer))
    assert not checkpoint.exists()
    published = [config.out, config.errors_path, config.report_path]
    assert [mode(path) for path in published] == [0o666] * 3  # what the umask (0) allows

    config.out.chmod(0o640)
    await run_batch(RunConfig(source, base_url=BASE, output_path=config.out, restart=True),
                    transport=httpx.MockTransport(answer))
    assert mode(config.out) == 0o640  # a replaced output keeps its permissions


@pytest.mark.parametrize("name", [".meta.json.tmp", "meta.json.tmp", ".journal.tmp", "output.jsonl", "lock"])
def test_a_symlink_left_in_a_checkpoint_is_refused(
        tmp_path: Path, sim: Simulator, victim: Path, name: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    checkpoint = tmp_path / "out.jsonl.checkpoint"
    checkpoint.mkdir(mode=0o700)
    (checkpoint / name).symlink_to(victim)
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 2 and f"{checkpoint / name} is not a file or directory of this user's" in err, err
    assert victim.read_bytes() == SECRET and sim.stats.requests == 0


def test_a_symlink_in_the_label_work_folder_is_refused(
        tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("data.csv").write_text("text\nhello\n")
    Path("t.txt").write_text("Classify: {text}\n")
    Path("data.labeled.csv.batch").mkdir()
    Path("data.labeled.csv.batch", "lock").symlink_to(victim)
    code, err = invoke("label", "data.csv", "-t", "t.txt", "--labels", "a,b", "--mock")
    assert code == 2 and "data.labeled.csv.batch/lock is not a file or directory of this user's" in err, err
    assert victim.read_bytes() == SECRET


@pytest.mark.parametrize("private", [True, False])
def test_a_file_written_whole_never_writes_through_a_symlink_at_its_temporary_name(
        tmp_path: Path, victim: Path, private: bool) -> None:
    target = tmp_path / "meta.json"
    (tmp_path / ".meta.json.tmp").symlink_to(victim)
    publish.write_atomically(target, b"new", private=private)
    assert target.read_bytes() == b"new" and not target.is_symlink()
    assert victim.read_bytes() == SECRET
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "meta.json"]


async def test_a_symlink_planted_at_the_reports_temporary_name_is_not_followed(
        source: Path, tmp_path: Path, victim: Path) -> None:
    # A stopped run writes its report beside the output, through a temporary file there.
    config = RunConfig(source, base_url=BASE, output_path=tmp_path / "out.jsonl")
    for name in (".out.report.json.tmp", "out.report.json.tmp"):  # this version's name, and the earlier one
        (tmp_path / name).symlink_to(victim)
    await interrupted(config)
    assert victim.read_bytes() == SECRET
    assert orjson.loads(config.report_path.read_bytes())["lines"] >= 10


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another user")
def test_a_checkpoint_of_another_user_is_refused(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    checkpoint = tmp_path / "out.jsonl.checkpoint"
    checkpoint.mkdir(mode=0o700)
    os.chown(checkpoint, OTHER_UID, OTHER_UID)
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 2 and f"{checkpoint} belongs to another user (uid {OTHER_UID})" in err, err
    assert list(checkpoint.iterdir()) == [] and sim.stats.requests == 0


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_a_file_of_another_user_in_a_checkpoint_is_refused(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    checkpoint = tmp_path / "out.jsonl.checkpoint"
    checkpoint.mkdir(mode=0o700)
    theirs = checkpoint / "output.jsonl"  # had the directory been theirs to write in once
    theirs.touch(mode=0o666)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 2 and f"{theirs} is not a file or directory of this user's" in err, err
    assert theirs.read_bytes() == b"" and sim.stats.requests == 0


def test_a_checkpoint_that_is_a_symlink_is_refused(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "out.jsonl.checkpoint").symlink_to(elsewhere)
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 2 and f"{tmp_path / 'out.jsonl.checkpoint'} is a symlink" in err, err
    assert list(elsewhere.iterdir()) == [] and sim.stats.requests == 0


async def test_a_checkpoint_others_can_write_in_is_refused_one_they_can_read_is_made_private(
        source: Path, tmp_path: Path) -> None:
    config = RunConfig(source, base_url=BASE, output_path=tmp_path / "out.jsonl")
    checkpoint = config.checkpoint_path
    checkpoint.mkdir()
    checkpoint.chmod(0o777)
    sent: list[httpx.Request] = []
    with pytest.raises(ConfigError, match=f"{checkpoint} is writable by other users"):
        await run_batch(config, transport=httpx.MockTransport(sent.append))  # type: ignore[arg-type]
    assert list(checkpoint.iterdir()) == [] and sent == []

    checkpoint.chmod(0o755)  # as an earlier version created it: others could only read it
    await interrupted(config)
    assert mode(checkpoint) == 0o700


def test_a_symlinked_output_is_written_through_to_its_target(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, messages=[]) if i == 2 else chat_line(i)
                                                 for i in range(5)])
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "link.jsonl").symlink_to(Path("other") / "real.jsonl")  # relative, to a file not there yet
    errors = tmp_path / "errs"
    errors.mkdir()
    (other / "real.errors.jsonl").symlink_to(errors / "e.jsonl")
    code, err = invoke("run", str(source), "-o", str(tmp_path / "link.jsonl"), "--base-url", sim.base_url)
    assert code == 1, err
    assert (tmp_path / "link.jsonl").is_symlink() and (other / "real.errors.jsonl").is_symlink()
    assert [r["custom_id"] for r in read_jsonl(other / "real.jsonl")] == [f"req-{i}" for i in range(5)]
    assert [r["custom_id"] for r in read_jsonl(errors / "e.jsonl")] == ["req-2"]
    assert sorted(p.name for p in other.iterdir()) == ["real.errors.jsonl", "real.jsonl", "real.report.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["errs", "in.jsonl", "link.jsonl", "other"]

    code, err = invoke("run", str(source), "-o", str(tmp_path / "link.jsonl"), "--base-url", sim.base_url)
    assert code == 1 and f"{other / 'real.jsonl'} is up to date" in err, err


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a symlink of another user")
def test_a_symlinked_output_of_another_user_is_refused(tmp_path: Path, sim: Simulator, victim: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    link = tmp_path / "out.jsonl"
    link.symlink_to(victim)
    os.lchown(link, OTHER_UID, OTHER_UID)
    code, err = invoke("run", str(source), "-o", str(link), "--base-url", sim.base_url)
    assert code == 2 and f"the output {link}: a symlink of another user (uid {OTHER_UID}), not followed" in err, err
    assert victim.read_bytes() == SECRET and sim.stats.requests == 0


FORGED = orjson.dumps({"id": "forged", "custom_id": "req-0", "response": None, "error": None}) + b"\n"


@pytest.mark.parametrize("stopped", [False, True])
async def test_a_checkpoint_swapped_after_it_was_checked_is_neither_written_nor_published(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopped: bool) -> None:
    """In a world-writable directory without the sticky bit, another user can rename the checked
    checkpoint away mid-run and put theirs at its name: the run goes on in its own (the one it
    opened), writes nothing into theirs, and never publishes what theirs holds."""
    monkeypatch.setattr(engine, "SYNC_INTERVAL", 0)  # the snapshot is saved throughout
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    config = RunConfig(source, base_url=BASE, output_path=shared / "out.jsonl", concurrency=4)
    checkpoint = config.checkpoint_path
    planted = {"output.jsonl": FORGED, "errors.jsonl": b"", "journal": b"", "lock": b"",
               "meta.json": orjson.dumps({"format": 1, "run_id": "theirs"})}

    def swap() -> None:
        checkpoint.rename(shared / "moved-away")
        checkpoint.mkdir(mode=0o700)
        for name, data in planted.items():
            (checkpoint / name).write_bytes(data)

    with anyio.CancelScope() as scope:
        stop = OnWritten(30, scope.cancel) if stopped else None

        class Both(OnWritten):
            def written(self, result: object, stats: object) -> None:
                super().written(result, stats)  # type: ignore[arg-type]
                if stop is not None:
                    stop.written(result, stats)  # type: ignore[arg-type]

        await run_batch(config, transport=httpx.MockTransport(answer), observer=Both(10, swap))
    assert {path.name: path.read_bytes() for path in checkpoint.iterdir()} == planted  # theirs, untouched
    if stopped:  # the run's own files stayed in its own folder, wherever it was moved
        assert not config.out.exists()
        assert len(read_jsonl(shared / "moved-away" / "output.jsonl")) >= 10
    else:
        assert [r["custom_id"] for r in read_jsonl(config.out)] == [f"req-{i}" for i in range(40)]
        assert FORGED not in config.out.read_bytes()
        assert list((shared / "moved-away").iterdir()) == []  # emptied by publishing; not at its name: kept
