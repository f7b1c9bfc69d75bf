"""`accounting.like`: the mean answer per model of a previous run's report."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from batchrun.accounting.like import load_like
from batchrun.errors import ConfigError


def _report(tmp_path: Path, models: object) -> Path:
    path = tmp_path / "run.report.json"
    path.write_bytes(orjson.dumps({"schema": "batchrun.report/1", "models": models}))
    return path


def test_the_mean_is_over_the_answers_with_usage_and_dated_names_pool_into_the_model(tmp_path: Path) -> None:
    like = load_like(_report(tmp_path, {
        "gpt-4o-mini-2024-07-18": {"succeeded": 4, "responses_without_usage": 0, "tokens": {"completion": 400}},
        "gpt-4o-mini": {"succeeded": 6, "responses_without_usage": 2, "tokens": {"completion": 800}},
        "o4-mini": {"succeeded": 0, "responses_without_usage": 0, "tokens": {"completion": 0}}}))
    assert like.mean("gpt-4o-mini") == 150.0  # (400 + 800) / (4 + 4)
    assert like.mean("gpt-4o-mini-2024-07-18") == 100.0  # the snapshot asked for by name: its own answers
    assert like.mean("gpt-4o-mini-2099-01-01") == 150.0  # another snapshot: the model's
    assert like.mean("o4-mini") is None and like.mean("gpt-5") is None  # no answers: nothing to expect


@pytest.mark.parametrize(("content", "says"), [
    (b"not json", "is not JSON"),
    (b'{"schema": "batchrun.estimate/1", "models": {}}', "is not a batchrun report"),
    (b'{"schema": "batchrun.report/1", "models": {"m": {"succeeded": "many"}}}', "model 'm' has no succeeded"),
])
def test_what_is_not_a_report_is_refused_naming_the_file(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=says) as caught:
        load_like(path)
    assert str(path) in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_like(tmp_path / "missing.json")
