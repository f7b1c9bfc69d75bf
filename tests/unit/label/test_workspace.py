"""`batchrun.label.workspace`: the work folder's paths, and what its files say — a run under way on
any route, results not joined yet."""

from __future__ import annotations

import os
from pathlib import Path

from batchrun.config import RunConfig
from batchrun.label.workspace import Workspace, engine_folders


def workspace(tmp_path: Path) -> Workspace:
    work = Workspace(tmp_path / "out.csv")
    work.dir.mkdir()
    work.unfinished = engine_folders(RunConfig(work.requests, work.results, base_url="http://127.0.0.1:9/v1"))
    return work


def test_the_paths_beside_the_output(tmp_path: Path) -> None:
    work = workspace(tmp_path)
    assert work.dir == tmp_path / "out.csv.batch"
    assert (work.requests.name, work.results.name, work.errors.name) == ("requests.jsonl", "results.jsonl",
                                                                         "results.errors.jsonl")
    assert [path.name for path in work.unfinished] == ["results.jsonl.checkpoint", "results.jsonl.batches",
                                                       "results.jsonl.shards"]


def test_a_checkpoint_batches_or_shards_are_a_run_under_way(tmp_path: Path) -> None:
    work = workspace(tmp_path)
    assert not work.running()
    for folder in work.unfinished:
        folder.mkdir()
        assert work.running()
        folder.rmdir()


def test_results_are_to_be_joined_until_marked_and_again_once_replaced(tmp_path: Path) -> None:
    work = workspace(tmp_path)
    assert not work.join_pending()  # no results yet
    work.results.write_bytes(b"{}\n")
    assert work.join_pending()
    (tmp_path / "out.csv").write_bytes(b"a\n")
    work.mark_joined(tmp_path / "out.csv")
    assert not work.join_pending()
    work.unfinished[1].mkdir()  # a --retry-failed through the Batch API under way: its results are not in yet
    replacement = work.results.with_name("new")
    replacement.write_bytes(b"{}\n{}\n")
    os.replace(replacement, work.results)
    assert not work.join_pending()
    work.unfinished[1].rmdir()
    assert work.join_pending()
