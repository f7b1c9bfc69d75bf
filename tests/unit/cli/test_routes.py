"""`batchrun.cli.routes`: the route that `run` and `label` options ask for, and the one call that
runs a config on it (each route end to end: test_batch_api.py, test_ray.py, test_label_routes.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pytest

from batchrun.batchapi.options import BatchOptions
from batchrun.batchapi.pending import Pending
from batchrun.cli.routes import Route
from batchrun.config import RunConfig
from batchrun.engine.sources import Source
from batchrun.stats import RunStats

DEFAULTS: dict[str, Any] = {"ray_address": None, "shards": None, "via": "online", "detach": False, "cancel": False,
                            "batch_deadline": None, "poll_interval": 60.0, "batch_max_requests": 50_000,
                            "batch_max_bytes": 200 * 10**6, "batch_mixed_models": False, "batch_queue_tokens": None}


def take(**given: Any) -> tuple[Route, dict[str, Any]]:
    params = {**DEFAULTS, **given, "concurrency": 8}
    return Route.take(params), params


def test_the_route_options_are_taken_out_and_the_rest_left() -> None:
    route, left = take()
    assert route == Route() and left == {"concurrency": 8}
    route, _ = take(via="batch", detach=True, batch_deadline=3600.0)
    assert route.batch is not None and route.batch.detach
    assert (route.batch.detach, route.batch.deadline, route.ray_address) == (True, 3600.0, None)
    route, _ = take(ray_address="", shards=3)
    assert (route.ray_address, route.shards, route.batch) == ("", 3, None)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"shards": 2}, "--shards only applies with --ray"),
        ({"ray_address": "", "via": "batch"}, "--ray runs online: it cannot be combined with --via batch"),
        ({"detach": True}, "--detach only applies with --via batch"),
        ({"via": "batch", "detach": True, "cancel": True}, "--detach and --cancel exclude each other"),
    ],
)
def test_options_that_do_not_go_together_are_usage_errors(given: dict[str, Any], message: str) -> None:
    with pytest.raises(click.UsageError, match=message):
        take(**given)


class Engine:
    """Records which of `EngineOptions`' runs a route called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def run(self, config: RunConfig, sources: Sequence[Source] = ()) -> RunStats:
        self.calls.append(("online", config))
        return RunStats(config.out, config.errors_path)

    def run_via_batch(self, config: RunConfig, batch: BatchOptions, sources: Sequence[Source] = ()) -> Pending:
        self.calls.append(("batch", batch))
        return Pending("at the provider", 0)


def test_each_route_runs_the_config_through_its_own_function(tmp_path: Path) -> None:
    config = RunConfig(tmp_path / "in.jsonl", base_url="http://127.0.0.1:9/v1")
    engine = Engine()
    assert isinstance(Route().run(engine, config), RunStats)  # type: ignore[arg-type]
    batch = BatchOptions(detach=True)
    assert Route(batch).run(engine, config) == Pending("at the provider", 0)  # type: ignore[arg-type]
    assert engine.calls == [("online", config), ("batch", batch)]
