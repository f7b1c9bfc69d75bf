"""Splitting the input into shards: contiguous, complete, balanced, and read shard by shard
exactly as a single run reads the whole file."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import orjson
import pytest

from batchrun.reader import BOM, MAX_LINE_BYTES, Position, read_jobs
from batchrun.records import LineError
from batchrun.scale.shards import MIN_SHARD_BYTES, PARTS_PER_SHARD, Shard, default_count, part_count, split


def envelope(custom_id: str, text: str = "hi") -> bytes:
    return orjson.dumps({"custom_id": custom_id, "body": {"model": "m", "messages": [{"role": "user", "content": text}]}})


def items(path: Path, shard: Shard | None = None) -> list[tuple[object, ...]]:
    """What the reader makes of the file (or of one shard): each item's every field."""
    if shard is None:
        read = read_jobs(path)
    else:
        read = read_jobs(path, shard.end, start=Position(shard.start, shard.first_line, shard.first_index),
                         duplicates=shard.duplicates)
    return [(type(item).__name__, item.index, item.line_no, item.custom_id,
             item.message if isinstance(item, LineError) else item.body) for item in read]


def by_shards(path: Path, count: int) -> tuple[list[Shard], list[tuple[object, ...]]]:
    size = path.stat().st_size
    shards = split(path, count, size)
    return shards, [item for shard in shards for item in items(path, shard)]


def check_cover(shards: list[Shard], size: int) -> None:
    """Contiguous and complete: each starts where the one before ended, from 0 to the end."""
    assert shards[0].start == 0 and shards[-1].end == size
    assert all(a.end == b.start for a, b in itertools.pairwise(shards))
    assert all(s.start < s.end for s in shards)
    assert [s.number for s in shards] == list(range(len(shards))) and {s.count for s in shards} == {len(shards)}


def messy_file(path: Path, rng: random.Random, n: int) -> Path:
    """Request lines with blank lines, CRLFs, bad JSON, lines that are no envelope and
    custom_ids repeated near and far, a BOM, and no newline at the end."""
    lines = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.05:
            lines.append(b"{not json")
        elif roll < 0.1:
            lines.append(b'{"messages": []}')  # a bare body: its id is line-N
        elif roll < 0.2:
            lines.append(envelope(f"id-{rng.randrange(n)}"))  # a repeat, or not
        else:
            lines.append(envelope(f"id-{i}", "x" * rng.randrange(200)))
        if rng.random() < 0.1:
            lines.append(rng.choice([b"", b"  ", b"\t"]))
    eol = [b"\n", b"\r\n"]
    path.write_bytes(BOM + b"".join(line + rng.choice(eol) for line in lines[:-1]) + lines[-1])
    return path


@pytest.mark.parametrize("seed", range(6))
def test_the_shards_read_as_the_whole_file_reads(tmp_path: Path, seed: int) -> None:
    """Every item (index, physical line, custom_id, duplicate and parse messages, body) is the
    single read's, shard by shard, for any number of shards."""
    rng = random.Random(seed)
    path = messy_file(tmp_path / "in.jsonl", rng, rng.randrange(50, 400))
    whole = items(path)
    for count in (1, 2, 3, 7, 50):
        shards, read = by_shards(path, count)
        check_cover(shards, path.stat().st_size)
        assert read == whole, count
    assert any(item[0] == "LineError" and "already used" in str(item[4]) for item in whole)


def test_a_repeat_of_an_earlier_shard_s_id_is_that_shard_s_duplicate(tmp_path: Path) -> None:
    lines = [envelope(f"id-{i}") for i in range(10)] + [envelope("id-3"), envelope("id-12"), envelope("id-12")]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    shards, read = by_shards(path, 2)
    assert len(shards) == 2 and shards[1].first_index <= 10
    assert shards[1].duplicates == {10}  # id-12 repeats within its own shard: its reader finds it
    assert [item[2] for item in read if item[0] == "LineError"] == [11, 13]
    assert read == items(path)


def test_shards_are_balanced_by_bytes(tmp_path: Path) -> None:
    rng = random.Random(3)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(envelope(f"id-{i}", "x" * rng.randrange(500)) + b"\n" for i in range(2000)))
    size = path.stat().st_size
    shards = split(path, 4, size)
    longest = max(len(line) for line in path.read_bytes().splitlines(keepends=True))
    assert len(shards) == 4
    for shard in shards:
        assert abs((shard.end - shard.start) - size / 4) <= 2 * longest


def test_tiny_inputs_give_fewer_shards_none_without_a_request(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n\n" + envelope("a") + b"\n\n\n" + envelope("b") + b"\n  \n\n")
    shards = split(path, 8, path.stat().st_size)
    assert (shards[0].start, shards[0].first_index, shards[0].first_line) == (0, 0, 0)
    assert len(shards) == 2 and shards[1].first_index == 1 and shards[1].first_line == 3
    assert all(any(item[0] == "Job" for item in items(path, s)) for s in shards)  # trailing blanks: the last's
    check_cover(shards, path.stat().st_size)
    single = tmp_path / "one.jsonl"
    single.write_bytes(envelope("a"))  # one line, no newline
    assert split(single, 4, single.stat().st_size) == [Shard(0, 1, 0, single.stat().st_size, 0, 0)]
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n")
    assert split(empty, 4, 2) == [Shard(0, 1, 0, 2, 0, 0)]  # a run of nothing, as a single run's


def test_a_line_too_long_to_read_counts_as_a_request_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    with path.open("wb") as f:
        f.write(envelope("a") + b"\n")
        f.write(b'{"custom_id": "long", "body": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n')
        f.write(envelope("b") + b"\n" + envelope("a") + b"\n")
    shards, read = by_shards(path, 3)
    assert read == items(path) and len(shards) == 3
    assert [s.first_index for s in shards] == [0, 2, 3]  # the long line is most of the bytes: shard 0's
    assert shards[2].duplicates == {3}


def test_only_the_first_size_bytes_are_split(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(envelope(f"id-{i}") + b"\n" for i in range(10)))
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(envelope("appended") + b"\n")
    shards = split(path, 3, size)
    assert shards[-1].end == size


def test_the_default_count_is_one_shard_per_cpu_none_under_the_minimum_size() -> None:
    assert default_count(8, 0) == 1
    assert default_count(8, MIN_SHARD_BYTES - 1) == 1
    assert default_count(8, 3 * MIN_SHARD_BYTES) == 4
    assert default_count(8, 100 * MIN_SHARD_BYTES) == 8
    assert default_count(0, 100 * MIN_SHARD_BYTES) == 1


def test_two_shards_plan_four_parts_each_none_of_fewer_than_twenty_waves_of_requests() -> None:
    """A part's end leaves the pool part empty for about one request's latency: a part has at
    least `PART_WAVES` times the concurrency in lines."""
    assert part_count(2, 100_000, 256) == 2 * PARTS_PER_SHARD == 8
    assert part_count(2, 30_000, 256) == 5  # 5,120 lines at least a part
    assert part_count(2, 2_000, 256) == 2  # never fewer than the shards
    assert part_count(2, 2_000, 4) == 8
    assert part_count(1, 100_000, 4) == 1  # one shard has nothing to balance
