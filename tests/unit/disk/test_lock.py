"""One run per output: the lock refuses a second holder naming the first, and is free again
once released."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchrun.disk.lock import RunLock
from batchrun.errors import ConfigError


def test_a_second_holder_is_refused_naming_the_first_holders_pid_and_the_output(tmp_path: Path) -> None:
    first = RunLock(tmp_path / "lock", Path("out.jsonl"))
    first.acquire()
    assert (tmp_path / "lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(ConfigError, match=rf"^another batchrun run \(pid {os.getpid()}\) is writing out\.jsonl; "):
        RunLock(tmp_path / "lock", Path("out.jsonl")).acquire()
    first.release()
    first.release()  # twice is harmless
    again = RunLock(tmp_path / "lock", Path("out.jsonl"))
    again.acquire()
    again.release()


def test_a_lock_left_with_another_pid_and_no_holder_is_taken_and_rewritten(tmp_path: Path) -> None:
    (tmp_path / "lock").write_text("99999999\n")
    lock = RunLock(tmp_path / "lock", Path("out.jsonl"))
    lock.acquire()
    assert (tmp_path / "lock").read_text() == f"{os.getpid()}\n"
    lock.release()


def test_the_lock_is_taken_by_name_in_a_directory_held_open(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        lock = RunLock(Path("elsewhere") / "lock", Path("out.jsonl"))
        lock.acquire(dir_fd=fd)
        assert (tmp_path / "lock").read_text() == f"{os.getpid()}\n"
        lock.release()
    finally:
        os.close(fd)


def test_a_symlink_at_the_locks_name_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    (tmp_path / "lock").symlink_to(target)
    with pytest.raises(ConfigError, match=r"lock: cannot open the lock: "):
        RunLock(tmp_path / "lock", Path("out.jsonl")).acquire()
    assert target.read_text() == "keep me"
