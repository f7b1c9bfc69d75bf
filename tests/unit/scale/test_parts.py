"""Where a sharded run keeps its parts, and its plan across starts."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest

from batchrun import run_batch_sync
from batchrun.config import RunConfig, Span
from batchrun.disk import journal
from batchrun.disk.checkpoint import Checkpoint
from batchrun.disk.identity import check_same_run, scan_input
from batchrun.errors import ConfigError
from batchrun.records import Result
from batchrun.scale import parts, shards
from batchrun.scale.shards import Shard
from batchrun.simulator import Simulator
from batchrun.stats import RunStats

from ...helpers import chat_line, write_jsonl

BASE = "http://127.0.0.1:9/v1"


def test_a_shard_s_files_are_its_part_s_beside_the_output(tmp_path: Path) -> None:
    config = RunConfig(tmp_path / "in.jsonl", tmp_path / "out.jsonl", base_url=BASE)
    part = parts.part_config(config, Shard(3, 12, 100, 200, 10, 11, frozenset({15})), "abc")
    folder = tmp_path / "out.jsonl.shards"
    assert (part.out, part.errors_path, part.report_path, part.checkpoint_path) == (
        folder / "0003.jsonl", folder / "0003.errors.jsonl", folder / "0003.report.json", folder / "0003.jsonl.checkpoint")
    assert part.output_path == part.out and config.out == tmp_path / "out.jsonl"
    assert (part.span, part.run_id) == (Span(100, 200, 10, 11, frozenset({15})), "abc")
    assert parts.part_config(config, Shard(3, 12_000, 100, 200, 10, 11), "abc").out.name == "00003.jsonl"


def test_the_plan_of_an_earlier_start_is_kept_and_another_input_s_refused(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(20)])
    config = RunConfig(source, tmp_path / "out.jsonl", base_url=BASE)
    made = parts.plan(config, 4)
    assert len(made.shards) == 4 and made.lines == 20
    again = parts.plan(config, 2)  # its shards' checkpoints hold the first plan's ranges
    assert again == made

    write_jsonl(source, [chat_line(i) for i in range(21)])
    with pytest.raises(ConfigError, match=r"has shards of a different run.*input file changed"):
        parts.plan(config, 4)
    fresh = parts.plan(replace(config, restart=True), 2)
    assert len(fresh.shards) == 2 and fresh.run_id != made.run_id and fresh.lines == 21


def test_a_new_plan_takes_the_split_made_meanwhile_unless_the_input_grew(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards, "PART_WAVES", 0)  # parts of a line or more
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(40)])
    config = RunConfig(source, tmp_path / "out.jsonl", base_url=BASE)
    early = parts.early_split(config, 3)
    assert early is not None and len(early) == 3 * shards.PARTS_PER_SHARD
    made = parts.plan(config, 2, lambda: early)  # the split made while Ray started, not made again
    assert made.shards == early
    assert parts.early_split(config, 3) is None  # an earlier start's plan: it is kept, nothing to split
    assert parts.early_split(replace(config, restart=True), 3) is not None

    write_jsonl(source, [chat_line(i) for i in range(41)])
    fresh = parts.plan(replace(config, restart=True), 2, lambda: early)  # split before the input grew
    assert len(fresh.shards) == 2 * shards.PARTS_PER_SHARD and fresh.shards[-1].end == source.stat().st_size


def test_assembling_waits_for_every_part(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(20)])
    config = RunConfig(source, tmp_path / "out.jsonl", base_url=BASE)
    made = parts.plan(config, 2)
    with pytest.raises(ConfigError, match=r"0000\.jsonl: shard 0 is not finished"):
        parts.assemble(config, made, shards=2, wall_s=1.0)
    assert not config.out.exists()


def test_a_shard_s_checkpoint_keeps_only_the_journal_lines_past_its_prefix(tmp_path: Path) -> None:
    """A shard's lines keep the whole run's indices: a journal line its ordered prefix already
    holds is dropped, by index past the shard's first one."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(20)])
    config = RunConfig(source, tmp_path / "out.jsonl", base_url=BASE)
    made = parts.plan(config, 2)
    shard = made.shards[1]
    checkpoint = Checkpoint(parts.part_config(config, shard, made.run_id))
    checkpoint.open(scan_input(source, (shard.start, shard.end)), restart=False, retry_failed=False)
    assert checkpoint.run_id == made.run_id  # every shard writes the ids of the plan's one run
    first = shard.first_index
    line = {i: Result(i, f"req-{i}", 200, "r", {}, None).encode(checkpoint.run_id) for i in range(first, first + 4)}
    checkpoint.output.write_bytes(line[first] + line[first + 1])
    checkpoint.journal.write_bytes(b"".join(journal.encode(i, True, line[i]) for i in (first + 1, first + 3)))
    recovered = checkpoint.recover(RunStats(config.out, config.errors_path))
    checkpoint.close()
    assert recovered.prefix == 2 and set(recovered.finished or {}) == {first + 3}


def test_a_part_s_identity_is_its_span_as_an_earlier_version_s_shard_range_was() -> None:
    """A checkpoint or report an earlier version wrote for a shard recorded its range with the
    shard's number and count; the same bytes are the same part."""
    def same_run(**given: object) -> dict[str, object]:
        return {"input": {"size": 100, "digest": "d", **given}, "options": {"base_url": BASE}}

    earlier = same_run(shard={"number": 1, "count": 2, "start": 40, "end": 100})
    check_same_run(earlier, same_run(span={"start": 40, "end": 100}), "here", "restart")
    with pytest.raises(ConfigError, match=r"here: it holds another part of the input \(bytes 40 to 100 → bytes "
                                          r"40 to 90\); restart"):
        check_same_run(earlier, same_run(span={"start": 40, "end": 90}), "here", "restart")
    with pytest.raises(ConfigError, match=r"another part of the input \(all of it → bytes 40 to 100\)"):
        check_same_run(same_run(), same_run(span={"start": 40, "end": 100}), "here", "restart")


def test_a_stopped_start_s_report_adds_up_what_its_shards_reports_say(sim: Simulator, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(20)])
    config = RunConfig(source, tmp_path / "out.jsonl", base_url=sim.base_url)
    made = parts.plan(config, 2)
    first = parts.part_config(config, made.shards[0], made.run_id)
    assert run_batch_sync(first).exit_code == 0  # the second shard never ran: no report of its own
    stats = RunStats(config.out, config.errors_path, total_hint=made.lines, started=0.0, finished=2.0)
    stats.stop_reason, stats.stop_code = "part 2 of 2: interrupted by SIGINT", 4
    parts.save_stopped(config, made, stats, shards=2, sent=3)
    report = json.loads(config.report_path.read_text())
    lines = made.shards[1].first_index
    assert (report["status"], report["exit_code"], report["stop_reason"]) == ("stopped", 4,
                                                                             "part 2 of 2: interrupted by SIGINT")
    assert (report["lines"], report["lines_finished"], report["input_lines"], report["shards"]) == (lines, lines, 20, 2)
    assert report["requests"]["succeeded"] == lines and (stats.written, stats.carried_over) == (lines, lines - 3)


@pytest.mark.parametrize("early", [False, True])
def test_a_plan_has_parts_of_twenty_waves_of_requests_four_a_shard_at_most(tmp_path: Path, early: bool) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(1000)])
    config = RunConfig(source, tmp_path / "out.jsonl", base_url=BASE, concurrency=10)  # 200 lines a part at least
    laid_out = parts.early_split(config, 2) if early else None
    made = parts.plan(config, 2, None if laid_out is None else lambda: laid_out)
    assert len(made.shards) == 5 and made.lines == 1000
    starts = [shard.first_index for shard in made.shards] + [1000]
    assert all(190 <= end - start <= 210 for start, end in itertools.pairwise(starts))  # balanced by bytes
    assert len(parts.plan(replace(config, restart=True, concurrency=2), 2).shards) == 2 * shards.PARTS_PER_SHARD
    assert len(parts.plan(replace(config, restart=True, concurrency=100), 2).shards) == 2


def test_a_plan_of_an_earlier_version_a_part_a_shard_resumes_as_it_is(tmp_path: Path) -> None:
    """A plan saved before the parts outnumbered the shards is a plan of as many parts: kept."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(1000)])
    config = RunConfig(source, tmp_path / "out.jsonl", base_url=BASE, concurrency=2)
    made = parts.plan(config, 2)
    plan_file = tmp_path / "out.jsonl.shards" / "plan.json"
    saved = json.loads(plan_file.read_text())
    middle = saved["shards"][len(saved["shards"]) // 2]
    halves = [[0, middle[0], 0, 0, []], [middle[0], saved["shards"][-1][1], middle[2], middle[3], []]]
    plan_file.write_text(json.dumps({**saved, "shards": halves}))
    again = parts.plan(config, 2)
    assert len(made.shards) == 2 * shards.PARTS_PER_SHARD
    assert [(s.start, s.end, s.first_index) for s in again.shards] == [(0, middle[0], 0), (middle[0], halves[1][1], middle[2])]
