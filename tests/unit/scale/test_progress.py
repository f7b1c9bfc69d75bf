"""A sharded run's progress: each shard's posts, and the driver's sum of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchrun.accounting.pricing import load_prices
from batchrun.accounting.report import Report
from batchrun.scale.progress import POST_EVERY, Post, ProgressBoard, ShardPoster, add_up
from batchrun.stats import RunStats


def answered(custom_id: str, tokens: int) -> dict[str, Any]:
    body = {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1, "completion_tokens": tokens - 1,
                                              "total_tokens": tokens}}
    return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None}


def shard_stats(*tokens: int) -> RunStats:
    stats = RunStats(Path("part.jsonl"), Path("part.errors.jsonl"))
    for i, count in enumerate(tokens):
        stats.report.add_record(answered(f"req-{i}", count))
        stats.written += 1
    return stats


def test_a_shard_posts_when_it_starts_then_at_most_every_interval() -> None:
    posts: list[Post] = []
    now = [0.0]
    poster = ShardPoster(posts.append, now=lambda: now[0])
    stats = shard_stats(10)
    poster.started(stats)
    assert [post.written for post in posts] == [1]
    stats = shard_stats(10, 20)
    poster.written(None, stats)  # type: ignore[arg-type]  # the result is not read
    assert len(posts) == 1  # too soon
    now[0] = POST_EVERY
    poster.written(None, stats)  # type: ignore[arg-type]
    assert [post.written for post in posts] == [1, 2]
    assert posts[-1].report["succeeded"] == 2  # the whole count, not what changed


def test_the_driver_adds_the_shards_latest_posts_up_into_the_one_stats_it_shows() -> None:
    prices = load_prices()
    board = ProgressBoard()
    board.post(0, Post.of(shard_stats(10, 20)))
    board.post(1, Post.of(shard_stats(30)))
    shown = RunStats(Path("out.jsonl"), Path("out.errors.jsonl"), Report(prices), total_hint=5)
    add_up(shown, board.read(), prices)
    assert (shown.written, shown.succeeded, shown.report.usage().total) == (3, 3, 60)
    held = shown
    board.post(1, Post.of(shard_stats(30)))  # again, as a repeated post: nothing counted twice
    board.post(1, Post.of(shard_stats(30, 40)))
    add_up(shown, board.read(), prices)
    assert shown is held and (shown.written, shown.succeeded, shown.report.usage().total) == (4, 4, 100)
