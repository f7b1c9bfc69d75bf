"""Planning alone: lines split into batches by count, bytes, endpoint and model, each file in
input order with the line's index as its ``custom_id``; where ``--max-cost`` splits the plan."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from batchrun.batchapi.options import BatchLimits
from batchrun.batchapi.plan import CapSplit, part_file, plan, request_line
from batchrun.errors import ConfigError
from batchrun.records import Job


def job(index: int, model: str = "m", url: str = "/v1/chat/completions", text: str = "hi") -> Job:
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": text}]})
    return Job(index, index + 2, f"user-id-{index}", url, body, model)


def lines_of(directory: Path, number: int) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in part_file(directory, number).read_bytes().splitlines()]


def test_a_request_line_names_the_line_by_its_index_and_keeps_its_body_as_it_is() -> None:
    line = request_line(job(7))
    assert line.endswith(b"\n")
    assert orjson.loads(line) == {"custom_id": "7", "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}


def test_lines_fill_batches_up_to_the_count_in_input_order(tmp_path: Path) -> None:
    parts = plan([job(i) for i in range(5)], BatchLimits(max_requests=2), tmp_path, Path("in.jsonl"))
    assert [(p.number, p.lines, p.first_index, p.first_line) for p in parts] == [(0, 2, 0, 2), (1, 2, 2, 4), (2, 1, 4, 6)]
    assert [[r["custom_id"] for r in lines_of(tmp_path, p.number)] for p in parts] == [["0", "1"], ["2", "3"], ["4"]]
    assert all(p.size == part_file(tmp_path, p.number).stat().st_size for p in parts)
    assert all(p.worst_usd is None for p in parts)  # no cap: no worst case asked


def test_a_batch_is_closed_before_its_file_would_pass_the_byte_limit(tmp_path: Path) -> None:
    size = len(request_line(job(0)))
    parts = plan([job(i) for i in range(5)], BatchLimits(max_bytes=2 * size + size // 2), tmp_path, Path("in.jsonl"))
    assert [p.lines for p in parts] == [2, 2, 1]
    assert all(p.size <= 2 * size + size // 2 for p in parts)


def test_each_model_and_each_endpoint_gets_batches_of_its_own_unless_models_may_mix(tmp_path: Path) -> None:
    jobs = [job(0, "a"), job(1, "b"), job(2, "a"), job(3, "a", url="/v1/embeddings")]
    (tmp_path / "one").mkdir()
    parts = plan(jobs, BatchLimits(), tmp_path / "one", Path("in.jsonl"))
    assert [(p.model, p.url, p.lines) for p in parts] == [("a", "/v1/chat/completions", 2), ("b", "/v1/chat/completions", 1),
                                                          ("a", "/v1/embeddings", 1)]
    (tmp_path / "mixed").mkdir()
    mixed = plan(jobs, BatchLimits(one_model=False), tmp_path / "mixed", Path("in.jsonl"))
    assert [(p.model, p.url, p.lines) for p in mixed] == [(None, "/v1/chat/completions", 3), (None, "/v1/embeddings", 1)]


def test_a_line_larger_than_a_batch_may_hold_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    jobs = [job(0), job(1, text="x" * 2000)]
    with pytest.raises(ConfigError, match=r"^in\.jsonl:3: the request is [\d,]+ bytes, more than one batch may hold "
                                          r"\(--batch-max-bytes 1,024\)"):
        plan(jobs, BatchLimits(max_bytes=1024), tmp_path, Path("in.jsonl"))


def test_the_cap_puts_the_lines_that_fit_in_batches_of_their_own_and_gives_each_its_worst_case(tmp_path: Path) -> None:
    cap = CapSplit(room=2.5, worst=lambda j: 1.0)
    parts = plan([job(i) for i in range(5)], BatchLimits(), tmp_path, Path("in.jsonl"), cap)
    assert [(p.first_index, p.lines, p.worst_usd) for p in parts] == [(0, 2, 2.0), (2, 3, 3.0)]


def test_lines_exactly_at_the_room_still_fit_and_once_over_every_later_line_stays_over(tmp_path: Path) -> None:
    costs = {0: 1.0, 1: 1.0, 2: 5.0, 3: 0.0}  # the last one is free, yet after the first that did not fit
    parts = plan([job(i) for i in range(4)], BatchLimits(), tmp_path, Path("in.jsonl"),
                 CapSplit(room=2.0, worst=lambda j: costs[j.index]))
    assert [[r["custom_id"] for r in lines_of(tmp_path, p.number)] for p in parts] == [["0", "1"], ["2", "3"]]
    assert [p.worst_usd for p in parts] == [2.0, 5.0]


def test_a_plan_replaces_a_request_file_a_crashed_plan_left_with_a_private_one(tmp_path: Path) -> None:
    left = part_file(tmp_path, 0)
    left.write_bytes(b"left over\n" * 10)
    left.chmod(0o644)
    plan([job(0)], BatchLimits(), tmp_path, Path("in.jsonl"))
    assert [r["custom_id"] for r in lines_of(tmp_path, 0)] == ["0"]
    assert left.stat().st_mode & 0o777 == 0o600
