"""The run's private directory alone: created 0700, an existing one checked and made private,
or refused with a message when others could have put something in it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchrun.disk.rundir import make_run_dir, open_run_dir
from batchrun.errors import ConfigError


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_directory_is_created_private_and_an_existing_one_is_reused(tmp_path: Path) -> None:
    run = tmp_path / "out.jsonl.checkpoint"
    assert make_run_dir(run, tmp_path / "out.jsonl") is True
    assert mode(run) == 0o700
    (run / "journal").write_bytes(b"")
    (run / "sub").mkdir()
    assert make_run_dir(run, tmp_path / "out.jsonl") is False


def test_the_descriptor_is_the_directory_that_was_checked(tmp_path: Path) -> None:
    fd, created = open_run_dir(tmp_path / "run", tmp_path / "out.jsonl")
    try:
        assert created
        assert os.fstat(fd).st_ino == (tmp_path / "run").stat().st_ino
    finally:
        os.close(fd)


def test_one_others_could_only_read_is_made_private(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    run.chmod(0o755)
    assert make_run_dir(run, tmp_path / "out.jsonl") is False
    assert mode(run) == 0o700


def test_one_others_could_write_in_is_refused_not_repaired(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o777)
    with pytest.raises(ConfigError, match=rf"^{run} is writable by other users.*chmod 700 {run}"):
        make_run_dir(run, tmp_path / "out.jsonl")
    assert mode(run) == 0o777


def test_a_symlink_at_its_name_or_inside_it_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match=rf"^{link} is a symlink"):
        make_run_dir(link, tmp_path / "out.jsonl")
    (real / "journal").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match=rf"^{real / 'journal'} is not a file or directory of this user's"):
        make_run_dir(real, tmp_path / "out.jsonl")


def test_a_missing_output_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'nope'}: output directory does not exist$"):
        make_run_dir(tmp_path / "nope" / "run", tmp_path / "nope" / "out.jsonl")


def test_a_file_where_the_directory_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("x")
    with pytest.raises(ConfigError, match=r"run: cannot open: "):
        make_run_dir(tmp_path / "run", tmp_path / "out.jsonl")
