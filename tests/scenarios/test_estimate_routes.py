"""``batchrun estimate`` beside a real response cache and a real run's report: the requests a
``run --cache`` would not send are priced at 0, and ``--like`` expects that run's answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from batchrun.cli import main
from tests.helpers import chat_line, invoke, write_jsonl

LINES = [chat_line(i, f"tell me about the number {i}", max_tokens=300, model="gpt-5-mini") for i in range(12)]


def _estimate(*args: str) -> tuple[dict[str, Any], str]:
    result = CliRunner().invoke(main, ["estimate", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout), result.stderr


def test_estimate_counts_what_a_cache_filled_by_a_run_answers_and_prices_the_rest(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", LINES)
    rest = write_jsonl(tmp_path / "rest.jsonl", LINES[5:])
    cache = tmp_path / "cache"
    code, err = invoke("run", str(write_jsonl(tmp_path / "first.jsonl", LINES[:5])), "--mock", "-q",
                       "--cache", str(cache))
    assert code == 0, err

    doc, _ = _estimate(str(source), "--cache", str(cache), "--mock")
    alone, _ = _estimate(str(rest))
    assert doc["cache"]["requests"] == 5 and doc["cache"]["saved_usd"]["online"]["high"] > 0
    assert doc["cost_usd"] == alone["cost_usd"] and doc["flex"]["cost_usd"] == alone["flex"]["cost_usd"]
    assert doc["batch_api"]["cost_usd"] == alone["batch_api"]["cost_usd"]
    assert doc["batch_api"]["queue_tokens"] == alone["batch_api"]["queue_tokens"]

    elsewhere, _ = _estimate(str(source), "--cache", str(cache))  # keyed per endpoint: not the simulator's
    assert elsewhere["cache"]["requests"] == 0

    missing = tmp_path / "no-cache-yet"
    empty, err = _estimate(str(source), "--cache", str(missing))
    assert empty["cache"]["requests"] == 0 and "the response cache was not read" in err
    assert not missing.exists()  # an estimate writes nothing


def test_like_a_real_runs_report_expects_its_mean_answer(tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "first.jsonl", LINES[:6])
    code, err = invoke("run", str(first), "--mock", "-q", "-o", str(tmp_path / "first.out.jsonl"))
    assert code == 0, err
    report_path = tmp_path / "first.out.report.json"
    entry = orjson.loads(report_path.read_bytes())["models"]["gpt-5-mini"]
    mean = entry["tokens"]["completion"] / entry["succeeded"]
    assert mean < 300

    source = write_jsonl(tmp_path / "in.jsonl", LINES)
    doc, _ = _estimate(str(source), "--like", str(report_path))
    assert doc["models"]["gpt-5-mini"]["expected_output_tokens"] == 12 * round(mean)
    assert doc["expected_output"]["like"]["assumed"] == []
    text = CliRunner().invoke(main, ["estimate", str(source), "--like", str(report_path)]).stdout
    assert f"(like {report_path})" in " ".join(text.split())

    result = CliRunner().invoke(main, ["estimate", str(source), "--like", str(source)])
    assert result.exit_code == 2 and f"{source} is not JSON" in " ".join(result.stderr.split())
