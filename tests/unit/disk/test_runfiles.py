"""What a run's file names stand for on disk, checked where the files are opened: a symlinked
output is written through, a directory or two names of one file are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun import run_batch_sync
from batchrun.config import RunConfig
from batchrun.disk.runfiles import checked
from batchrun.errors import ConfigError
from batchrun.simulator import Simulator

from ...helpers import chat_line, read_jsonl, write_jsonl

BASE = "http://127.0.0.1:9/v1"


def test_a_symlinked_output_is_resolved_to_its_target(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "link.jsonl").symlink_to(Path("other") / "real.jsonl")  # relative, to a file not there yet
    config = checked(RunConfig(tmp_path / "in.jsonl", tmp_path / "link.jsonl", base_url=BASE))
    assert config.out == tmp_path / "other" / "real.jsonl"
    assert config.checkpoint_path == tmp_path / "other" / "real.jsonl.checkpoint"
    plain = RunConfig(tmp_path / "in.jsonl", tmp_path / "out.jsonl", base_url=BASE)
    assert checked(plain) is plain


def test_a_directory_or_two_names_of_one_file_are_refused(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(ConfigError, match=r"the output .*dir.jsonl is a directory"):
        checked(RunConfig(source, tmp_path / "dir.jsonl", base_url=BASE))
    (tmp_path / "out.errors.jsonl").symlink_to(source)
    with pytest.raises(ConfigError, match=r"the errors file .*out.errors.jsonl is the input file"):
        checked(RunConfig(source, tmp_path / "out.jsonl", base_url=BASE))
    (tmp_path / "o2.report.json").hardlink_to(source)
    with pytest.raises(ConfigError, match=r"the report .*o2.report.json is the input file"):
        checked(RunConfig(source, tmp_path / "o2.jsonl", base_url=BASE))


def test_a_loop_of_links_at_the_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").symlink_to("b.jsonl")
    (tmp_path / "b.jsonl").symlink_to("a.jsonl")
    with pytest.raises(ConfigError, match=r"the output .*: Too many levels of symbolic links; remove the link"):
        checked(RunConfig(tmp_path / "in.jsonl", tmp_path / "a.jsonl", base_url=BASE))


def test_the_library_writes_through_a_symlinked_output_too(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    (tmp_path / "other").mkdir()
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "other" / "real.jsonl")
    stats = run_batch_sync(RunConfig(source, tmp_path / "link.jsonl", base_url=sim.base_url))
    assert stats.exit_code == 0 and stats.output_path == tmp_path / "other" / "real.jsonl"
    assert (tmp_path / "link.jsonl").is_symlink() and len(read_jsonl(tmp_path / "other" / "real.jsonl")) == 3
    assert (tmp_path / "other" / "real.report.json").exists() and not (tmp_path / "link.report.json").exists()
