"""`RunDesk`: a sharded run's one actor, its budget and its progress board in one process."""

from __future__ import annotations

from batchrun.scale.budget import Holding, Want
from batchrun.scale.desk import RunDesk
from batchrun.scale.progress import Post

from .test_progress import shard_stats


def test_the_run_s_one_actor_keeps_the_posts_beside_the_budget() -> None:
    desk = RunDesk(rpm=60)
    desk.post(0, Post.of(shard_stats(10)))
    desk.post(0, Post.of(shard_stats(10, 20)))
    assert [post.written for post in desk.read().values()] == [2]
    grant = desk.lease(0, Holding(), Want())
    assert grant.requests == 1.0  # a second of 60 RPM for the one shard leasing
