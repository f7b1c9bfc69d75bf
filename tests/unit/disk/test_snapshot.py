"""The prefix snapshot alone: used only when it checks out against the files it describes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchrun.disk import snapshot
from batchrun.disk.snapshot import Snapshot, encode, load
from batchrun.records import Result


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield tmp_path, fd
    os.close(fd)


def output(folder: Path, *bodies: object) -> int:
    data = b"".join(Result(i, f"req-{i}", 200, None, body, None).encode("run") for i, body in enumerate(bodies))
    (folder / "out.jsonl").write_bytes(data)
    (folder / "errors.jsonl").write_bytes(b"")
    return len(data)


def loaded(folder: tuple[Path, int], made: Snapshot | bytes) -> Snapshot | None:
    path, fd = folder
    (path / "prefix.json").write_bytes(made if isinstance(made, bytes) else encode(made))
    return load(path / "prefix.json", path / "out.jsonl", path / "errors.jsonl", fd)


def test_a_snapshot_of_the_files_as_they_are_is_used(folder: tuple[Path, int]) -> None:
    size = output(folder[0], {"a": 1}, {"b": 2})
    made = Snapshot(2, size, 0, "req-1", {"lines": 2})
    assert loaded(folder, made) == made


def test_files_appended_to_since_keep_the_snapshot_true(folder: tuple[Path, int]) -> None:
    size = output(folder[0], {"a": 1}, {"b": 2})
    with (folder[0] / "out.jsonl").open("ab") as f:
        f.write(Result(2, "req-2", 200, None, {}, None).encode("run"))
    made = Snapshot(2, size, 0, "req-1", {})
    assert loaded(folder, made) == made


def test_the_line_ending_the_prefix_is_found_however_long_it_is(folder: tuple[Path, int],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "_BACK", 7)  # many blocks back to the line's start
    size = output(folder[0], {"a": "x" * 100}, {"b": "y" * 100})
    made = Snapshot(2, size, 0, "req-1", {})
    assert loaded(folder, made) == made
    size = output(folder[0], {"a": "x" * 100})  # the first line: no newline before it
    assert loaded(folder, Snapshot(1, size, 0, "req-0", {})) is not None


def test_an_empty_prefix_describes_empty_files(folder: tuple[Path, int]) -> None:
    output(folder[0])
    assert loaded(folder, Snapshot(0, 0, 0, None, {})) == Snapshot(0, 0, 0, None, {})
    assert loaded(folder, Snapshot(0, 10, 0, None, {})) is None  # lines and bytes disagree


@pytest.mark.parametrize("wrong", ["custom_id", "mid_line", "longer", "errors_longer"])
def test_a_snapshot_of_other_files_is_not_used(folder: tuple[Path, int], wrong: str) -> None:
    size = output(folder[0], {"a": 1}, {"b": 2})
    made = {"custom_id": Snapshot(2, size, 0, "req-9", {}), "mid_line": Snapshot(2, size - 1, 0, "req-1", {}),
            "longer": Snapshot(2, size + 1, 0, "req-1", {}), "errors_longer": Snapshot(2, size, 5, "req-1", {})}[wrong]
    assert loaded(folder, made) is None


def test_a_torn_or_altered_or_foreign_snapshot_is_not_used(folder: tuple[Path, int]) -> None:
    size = output(folder[0], {"a": 1})
    good = encode(Snapshot(1, size, 0, "req-0", {}))
    assert loaded(folder, good[:-5]) is None  # torn
    assert loaded(folder, good.replace(b'"lines":1', b'"lines":2')) is None  # its CRC no longer matches
    assert loaded(folder, good.replace(b'"format":1', b'"format":2')) is None
    assert loaded(folder, b'{"format":1,"crc":0,"snapshot":[]}') is None
    path, fd = folder
    assert load(path / "missing.json", path / "out.jsonl", path / "errors.jsonl", fd) is None
