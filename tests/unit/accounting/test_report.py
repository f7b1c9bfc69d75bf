"""The report: totals, shapes of usage, costs, latency percentiles, files, the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun import reader as reader_module
from batchrun.accounting.pricing import builtin_prices, load_prices
from batchrun.accounting.report import SCHEMA, Report, error_code, report_file
from batchrun.cli import main
from batchrun.cli.tables import duration, render_report
from batchrun.errors import InputFileError
from batchrun.records import Result
from batchrun.usage import Usage

from ...helpers import write_jsonl

DATA = Path(__file__).parents[2] / "data"
MODELS = ["gpt-4o-mini", "gpt-4o-mini-2024-07-18", "o4-mini", "gpt-4.1", "text-embedding-3-small", "mystery-model"]


def success(model: str, usage: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "x", "object": "chat.completion", "model": model}
    if usage is not None:
        body["usage"] = usage
    return {"id": "batch_req_1", "custom_id": "c", "response": {"status_code": 200, "request_id": "r", "body": body},
            "error": None, **extra}


# -- the property: totals are the sums over the lines ---------------------------------------------

counts = st.integers(min_value=0, max_value=10_000_000)


@st.composite
def output_line(draw: st.DrawFn) -> tuple[dict[str, Any], str, Usage | None, bool]:
    """A random output line, with the model, usage and outcome the report should read from it."""
    model = draw(st.sampled_from(MODELS))
    shape = draw(st.sampled_from(["chat", "responses", "embeddings", "http_error", "no_response", "no_usage"]))
    prompt, completion = draw(counts), draw(counts)
    cached, reasoning = draw(st.integers(0, prompt)), draw(st.integers(0, completion))
    if shape == "chat":
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                 "prompt_tokens_details": {"cached_tokens": cached},
                 "completion_tokens_details": {"reasoning_tokens": reasoning}}
        return success(model, usage), model, Usage(prompt, completion, prompt + completion, cached, reasoning), True
    if shape == "responses":
        usage = {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion,
                 "input_tokens_details": {"cached_tokens": cached},
                 "output_tokens_details": {"reasoning_tokens": reasoning}}
        return success(model, usage), model, Usage(prompt, completion, prompt + completion, cached, reasoning), True
    if shape == "embeddings":
        return (success(model, {"prompt_tokens": prompt, "total_tokens": prompt}), model,
                Usage(prompt=prompt, total=prompt), True)
    if shape == "no_usage":
        return success(model, None), model, None, True
    if shape == "http_error":
        status = draw(st.sampled_from([400, 404, 429, 500]))
        record = {"custom_id": "c", "response": {"status_code": status, "request_id": "r",
                                                 "body": {"error": {"code": "some_code", "message": "m"}}},
                  "error": {"code": "some_code", "message": "m"}}
        return record, "unknown", None, False
    return {"custom_id": "c", "response": None, "error": {"code": "request_timeout", "message": "m"}}, "unknown", None, False


@settings(max_examples=150, deadline=None)
@given(st.lists(output_line(), max_size=40))
def test_report_totals_equal_the_sums_over_the_lines(lines: list[tuple[dict[str, Any], str, Usage | None, bool]]) -> None:
    report = Report(builtin_prices())
    for record, _, _, _ in lines:
        report.add_record(record)
    doc = report.to_dict()

    expected_total = Usage()
    per_model: dict[str, Usage] = {}
    expected_cost = 0.0
    unpriced_tokens = False
    for _, model, usage, _ in lines:
        if usage is None:
            continue
        expected_total.add(usage)
        per_model.setdefault(model, Usage()).add(usage)
        cost = builtin_prices().cost(model, usage)
        if cost is None:
            unpriced_tokens = unpriced_tokens or usage != Usage()
        else:
            expected_cost += cost

    assert doc["lines"] == len(lines)
    assert doc["requests"]["succeeded"] == sum(ok for *_, ok in lines)
    assert doc["requests"]["failed"] == sum(not ok for *_, ok in lines)
    assert sum(doc["requests"]["by_error_code"].values()) == doc["requests"]["failed"]
    assert doc["tokens"] == expected_total.as_dict()
    for model, usage in per_model.items():
        assert doc["models"][model]["tokens"] == usage.as_dict()
    assert doc["cost_usd_priced"] == pytest.approx(expected_cost, rel=1e-9, abs=1e-12)
    if unpriced_tokens:
        assert doc["cost_usd"] is None
        assert any("mystery-model" in note for note in doc["warnings"])
    else:
        assert doc["cost_usd"] == pytest.approx(expected_cost, rel=1e-9, abs=1e-12)
    assert doc["rate_limited"] == sum(1 for record, *_ in lines
                                      if (record.get("response") or {}).get("status_code") == 429)


# -- shapes of usage, models and prices ------------------------------------------------------------


def test_responses_api_usage_is_normalised_into_the_same_fields() -> None:
    report = Report()
    report.add_record(success("gpt-4.1", {"input_tokens": 500, "input_tokens_details": {"cached_tokens": 100},
                                          "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 20},
                                          "total_tokens": 550}))
    tokens = report.to_dict()["models"]["gpt-4.1"]["tokens"]
    assert tokens == {"prompt": 500, "completion": 50, "total": 550, "cached": 100, "reasoning": 20}
    assert report.to_dict()["cost_usd"] == pytest.approx((400 * 2.0 + 100 * 0.5 + 50 * 8.0) / 1e6)


def test_embeddings_usage_has_prompt_tokens_only() -> None:
    report = Report()
    report.add_record(success("text-embedding-3-large", {"prompt_tokens": 1000, "total_tokens": 1000}))
    doc = report.to_dict()
    assert doc["tokens"] == {"prompt": 1000, "completion": 0, "total": 1000, "cached": 0, "reasoning": 0}
    assert doc["cost_usd"] == pytest.approx(1000 * 0.13 / 1e6)


def test_an_unknown_model_has_unknown_cost_never_zero() -> None:
    report = Report()
    report.add_record(success("gpt-4o-mini", {"prompt_tokens": 1000, "completion_tokens": 0, "total_tokens": 1000}))
    report.add_record(success("mystery-model", {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}))
    doc = report.to_dict()
    assert doc["models"]["mystery-model"]["cost_usd"] is None
    assert doc["models"]["mystery-model"]["priced_as"] is None
    assert doc["cost_usd"] is None
    assert doc["cost_usd_priced"] == pytest.approx(1000 * 0.15 / 1e6)
    assert any("no price for model 'mystery-model'" in note for note in doc["warnings"])
    text = render_report(report.to_dict())
    assert "unknown" in text and "mystery-model" in text


def test_a_model_that_used_no_tokens_costs_nothing_even_unpriced() -> None:
    report = Report()
    report.add_record({"custom_id": "c", "response": None, "error": {"code": "invalid_request_line", "message": "m"}})
    doc = report.to_dict()
    assert doc["cost_usd"] == 0.0
    assert doc["warnings"] == []


def test_a_dated_model_id_is_priced_as_its_family_but_reported_as_billed() -> None:
    report = Report()
    report.add_record(success("gpt-4o-mini-2024-07-18", {"prompt_tokens": 1000, "completion_tokens": 1000,
                                                         "total_tokens": 2000}))
    entry = report.to_dict()["models"]["gpt-4o-mini-2024-07-18"]
    assert entry["priced_as"] == "gpt-4o-mini"
    assert entry["cost_usd"] == pytest.approx((1000 * 0.15 + 1000 * 0.60) / 1e6)


def test_a_price_override_file_changes_the_cost(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {"mystery-model": {"input": 1.0, "output": 3.0},'
                      ' "gpt-4o-mini": {"input": 10.0, "output": 20.0}}}')
    out = write_jsonl(tmp_path / "out.jsonl", [
        success("mystery-model", {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000, "total_tokens": 2_000_000}),
        success("gpt-4o-mini", {"prompt_tokens": 1_000_000, "completion_tokens": 0, "total_tokens": 1_000_000}),
    ])
    doc = report_file(out, load_prices(prices)).to_dict()
    assert doc["models"]["mystery-model"]["cost_usd"] == pytest.approx(4.0)
    assert doc["cost_usd"] == pytest.approx(14.0)
    assert doc["prices"]["overrides"] == str(prices)
    assert doc["warnings"] == []


def test_a_success_without_usage_is_warned_about() -> None:
    report = Report()
    report.add_record(success("gpt-4o-mini", None))
    doc = report.to_dict()
    assert doc["models"]["gpt-4o-mini"]["responses_without_usage"] == 1
    assert any("reported no usage" in note for note in doc["warnings"])


@pytest.mark.parametrize(("error", "status", "body", "code"), [
    ({"code": "request_timeout", "message": "m"}, None, None, "request_timeout"),
    (None, 400, {"error": {"code": "invalid_value", "type": "invalid_request_error"}}, "invalid_value"),
    (None, 500, {"error": {"code": None, "type": "server_error"}}, "server_error"),
    ("Request must not be sent in stream mode", 400, None, "http_400"),          # vLLM: a plain string
    ({"error": {"code": 400, "type": "BadRequestError", "message": "m"}}, 400, None, "BadRequestError"),
    ({"object": "error", "code": 400, "type": "BadRequestError"}, 400, None, "BadRequestError"),  # older vLLM
    (None, 502, "<html>bad gateway</html>", "http_502"),
    (None, None, None, "no_response"),
])
def test_error_codes_are_read_from_every_shape(error: Any, status: int | None, body: Any, code: str) -> None:
    assert error_code(error, status, body) == code


# -- files from other tools -----------------------------------------------------------------------


def test_report_on_an_openai_batch_output_file() -> None:
    doc = report_file(DATA / "openai_batch_output.jsonl").to_dict()
    assert doc["lines"] == 4 and doc["requests"]["succeeded"] == 4 and doc["requests"]["failed"] == 0
    assert doc["tokens"] == {"prompt": 9800, "completion": 1250, "total": 11050, "cached": 1024, "reasoning": 832}
    models = doc["models"]
    assert models["gpt-4o-mini-2024-07-18"]["cost_usd"] == pytest.approx((176 * 0.15 + 1024 * 0.075 + 300 * 0.6) / 1e6)
    assert models["o4-mini-2025-04-16"]["cost_usd"] == pytest.approx((100 * 1.10 + 900 * 4.40) / 1e6)
    assert models["gpt-4.1-2025-04-14"]["cost_usd"] == pytest.approx((500 * 2.0 + 50 * 8.0) / 1e6)
    assert models["text-embedding-3-small"]["cost_usd"] == pytest.approx(8000 * 0.02 / 1e6)
    assert doc["cost_usd"] == pytest.approx(5913.2 / 1e6)
    assert doc["retries"] is None and doc["latency_ms"] is None and doc["wall_time_s"] is None
    discounted = report_file(DATA / "openai_batch_output.jsonl", load_prices(batch_discount=True)).to_dict()
    assert discounted["cost_usd"] == pytest.approx(5913.2 / 2 / 1e6)


def test_report_on_an_openai_batch_error_file() -> None:
    doc = report_file(DATA / "openai_batch_errors.jsonl").to_dict()
    assert doc["requests"] == {
        "succeeded": 0, "failed": 5,
        "by_error_code": {"batch_expired": 2, "invalid_value": 1, "model_not_found": 1, "server_error": 1},
        "by_status": {"400": 1, "404": 1, "500": 1, "none": 2},
    }
    assert doc["cost_usd"] == 0.0


def test_report_on_vllm_output_with_errors_in_the_top_level_error() -> None:
    doc = report_file(DATA / "vllm_output.jsonl").to_dict()
    assert doc["requests"]["succeeded"] == 2 and doc["requests"]["failed"] == 2
    assert doc["requests"]["by_error_code"] == {"http_400": 1, "BadRequestError": 1}
    llama = doc["models"]["meta-llama/Meta-Llama-3.1-8B-Instruct"]
    assert llama["tokens"] == {"prompt": 82, "completion": 7, "total": 89, "cached": 0, "reasoning": 0}
    assert llama["cost_usd"] is None and doc["cost_usd"] is None   # a local model: priced only by --prices


def test_report_on_batchruns_own_output_matches_the_live_results() -> None:
    results = [
        Result(0, "a", 200, "r0", {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                                                                      "total_tokens": 15}},
               None, attempts=3, latency_ms=120.5, model="gpt-4o-mini", started_at=1e9, finished_at=1e9 + 0.12,
               rate_limited=1),
        Result(1, "b", 429, "r1", {"error": {"code": "rate_limit_exceeded", "message": "slow down"}},
               {"code": "rate_limit_exceeded", "message": "slow down"}, attempts=6, latency_ms=30.0, model="gpt-4o-mini",
               started_at=1e9 + 2, finished_at=1e9 + 2.03),
        Result(2, "c", None, None, None, {"code": "request_timeout", "message": "timed out"}, attempts=2,
               latency_ms=None, model="o4-mini", started_at=1e9 + 1, finished_at=1e9 + 61),
        Result(3, "line-4", None, None, None, {"code": "invalid_request_line", "message": "x:4: not JSON"}),
    ]
    live, from_file = Report(), Report()
    for result in results:
        live.add_result(result)
        from_file.add_record(orjson.loads(result.encode("run")), model=result.model)
    assert live.to_dict() == from_file.to_dict()
    doc = live.to_dict()
    assert doc["retries"] == 2 + 5 + 1
    assert doc["rate_limited"] == 2
    assert sum(bucket["rate_limited"] for bucket in doc["timeline"]["buckets"]) == 2
    assert doc["failure_examples"]["invalid_request_line"] == [{"custom_id": "line-4", "message": "x:4: not JSON"}]
    assert doc["requests"]["by_error_code"] == {"rate_limit_exceeded": 1, "request_timeout": 1,
                                                "invalid_request_line": 1}
    assert doc["latency_ms"]["count"] == 2


def test_live_extras_count_retried_429s_and_wall_time() -> None:
    report = Report()
    report.add_result(Result(0, "a", 200, "r", {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 100,
                                                                               "total_tokens": 100}},
                             None, attempts=3, latency_ms=10.0, model="gpt-4o-mini", rate_limited=2))
    report.set_wall_time(4.0)
    doc = report.to_dict()
    assert doc["rate_limited"] == 2 and doc["retries"] == 2
    assert doc["wall_time_s"] == 4.0 and doc["throughput_rps"] == 0.25 and doc["tokens_per_s"] == 25.0
    assert "4.0 s" in render_report(report.to_dict())


def test_rate_limited_counts_from_the_batchrun_block_are_read() -> None:
    report = Report()
    report.add_record(success("gpt-4o-mini", None, batchrun={"attempts": 4, "latency_ms": 9.5, "rate_limited": 3}))
    assert report.to_dict()["rate_limited"] == 3


def test_lines_that_are_not_output_records_are_counted_with_their_place(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    good = orjson.dumps(success("gpt-4o-mini", {"prompt_tokens": 1, "total_tokens": 1})).decode()
    path.write_text("\ufeff" + good + "\r\n\n{broken\n[1, 2]\n" + good + "\n{\"custom_id\": \"x\"}\n")
    doc = report_file(path).to_dict()
    assert doc["lines"] == 2 and doc["unreadable_lines"] == 3
    assert any(f"{path}:3, {path}:4, {path}:6" in note for note in doc["warnings"])


def test_a_line_over_the_line_limit_is_unreadable_and_the_next_is_read(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    good = orjson.dumps(success("gpt-4o-mini", {"prompt_tokens": 1, "total_tokens": 1}))
    long = orjson.dumps(success("gpt-4o-mini", {"prompt_tokens": 1, "total_tokens": 1}, padding="x" * 200))
    monkeypatch.setattr(reader_module, "MAX_LINE_BYTES", len(good) + 10)
    path = tmp_path / "out.jsonl"
    path.write_bytes(good + b"\n" + long + b"\n" + good + b"\n")
    doc = report_file(path).to_dict()
    assert doc["lines"] == 2 and doc["unreadable_lines"] == 1
    assert any(f"skipped: {path}:2" in note for note in doc["warnings"])


def test_a_missing_file_is_an_input_file_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        report_file(tmp_path / "nope.jsonl")


# -- the command -----------------------------------------------------------------------------------


def test_report_command_prints_a_table() -> None:
    result = CliRunner().invoke(main, ["report", str(DATA / "openai_batch_errors.jsonl")])
    assert result.exit_code == 0, result.output
    assert "5 lines: 0 succeeded, 5 failed" in result.output
    assert "batch_expired 2" in result.output
    assert "retries     unknown" in result.output


def test_report_command_json_follows_the_schema(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {"meta-llama/Meta-Llama-3.1-8B-Instruct": {"input": 0.1, "output": 0.2}}}')
    result = CliRunner().invoke(main, ["report", str(DATA / "vllm_output.jsonl"), "--json", "--prices", str(prices)])
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout)
    assert doc["schema"] == SCHEMA
    assert set(doc) >= {"lines", "requests", "retries", "rate_limited", "tokens", "models", "cost_usd", "prices",
                        "latency_ms", "wall_time_s", "throughput_rps", "warnings"}
    assert doc["cost_usd"] == pytest.approx((82 * 0.1 + 7 * 0.2) / 1e6)


def test_report_command_on_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "no such file" in result.output


@pytest.mark.parametrize(("seconds", "text"), [(0.04, "0.0 s"), (12.34, "12.3 s"), (119.9, "119.9 s"),
                                                (185.7, "3m05s"), (3723.9, "1h02m03s"), (90061, "25h01m01s")])
def test_one_duration_format_for_the_report_and_the_progress_log(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(output_line(), st.integers(1, 5), st.floats(0, 5e4), st.integers(0, 3), st.booleans()),
                max_size=30), st.integers(0, 30))
def test_reports_of_two_parts_merged_count_what_one_report_of_both_counts(
        lines: list[tuple[tuple[dict[str, Any], str, Usage | None, bool], int, float, int, bool]], cut: int) -> None:
    records = []
    for (record, *_), attempts, latency, rate_limited, batch in lines:
        extra = {"attempts": attempts, "latency_ms": latency, "wire_ms": latency * attempts, "waited_ms": latency / 2,
                 "rate_limited": rate_limited, **({"batch_id": "batch_1"} if batch else {})}
        records.append({**record, "batchrun": extra})
    whole, first, second = Report(builtin_prices()), Report(builtin_prices()), Report(builtin_prices())
    for i, record in enumerate(records):
        whole.add_record(record)
        (first if i < cut else second).add_record(record)
    first.merge(second)

    def exact(state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "wire_s": None, "waited_s": None, "latency": {**state["latency"], "total": None}}

    merged, expected = first.state(), whole.state()
    assert exact(merged) == exact(expected)
    for key in ("wire_s", "waited_s"):
        assert merged[key] == pytest.approx(expected[key])
    assert merged["latency"]["total"] == pytest.approx(expected["latency"]["total"])
    assert first.to_dict()["latency_ms"] == pytest.approx(whole.to_dict()["latency_ms"])


def _cut_answer(custom_id: str) -> dict[str, Any]:
    body = {"model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"content": ""}, "finish_reason": "length"}]}
    return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None}


def test_the_answers_the_output_cap_cut_are_named_and_the_names_survive_a_resume_and_a_merge() -> None:
    first, second = Report(builtin_prices()), Report(builtin_prices())
    for i in range(3):
        first.add_record(_cut_answer(f"a-{i}"))
        second.add_record(_cut_answer(f"b-{i}"))
    restored = Report(builtin_prices())
    restored.restore(orjson.loads(orjson.dumps(first.state())))
    assert restored.to_dict()["output_cap_examples"] == ["a-0", "a-1", "a-2"]
    restored.merge(second)
    assert restored.to_dict()["hit_output_cap"] == 6
    assert restored.to_dict()["output_cap_examples"] == ["a-0", "a-1", "a-2", "b-0", "b-1"]  # the first 5
    old = first.state()
    del old["cut_examples"]  # a checkpoint written before they were kept
    restored.restore(old)
    assert restored.to_dict()["output_cap_examples"] == [] and restored.hit_output_cap == 3


# -- service tiers ---------------------------------------------------------------------------------

USAGE = {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000}


def tiered(tier: str | None, **batchrun: Any) -> dict[str, Any]:
    record = success("o4-mini", USAGE, batchrun={"attempts": 1, **batchrun})
    if tier is not None:
        record["response"]["body"]["service_tier"] = tier
    return record


def test_a_line_answered_on_flex_is_priced_at_the_batch_rate_and_counted_by_tier() -> None:
    prices = builtin_prices()
    full = prices.cost("o4-mini", Usage(1000, 2000, 3000))
    assert full is not None
    report = Report(prices)
    report.add_record(tiered("flex"))
    report.add_record(tiered("default", tier_fallback=True, capacity_refused=3))
    report.add_record(tiered(None))
    doc = report.to_dict()
    assert doc["cost_usd"] == pytest.approx(full / 2 + full + full)
    assert doc["flex"] == {"lines": 1, "cost_usd": pytest.approx(full / 2), "saved_usd": pytest.approx(full / 2)}
    assert doc["tiers"] == {"flex": 1, "default": 1}
    assert doc["tier_fallback"] == {"lines": 1, "cost_usd": pytest.approx(full)}
    assert doc["capacity_refused"] == 3 and doc["batch_api"] is None


def test_tier_counters_survive_a_resume_and_merge() -> None:
    report = Report(builtin_prices())
    report.add_record(tiered("flex", capacity_refused=2))
    report.add_record(tiered("default", tier_fallback=True))
    restored = Report(builtin_prices())
    restored.restore(orjson.loads(orjson.dumps(report.state())))
    assert restored.to_dict() == report.to_dict()
    restored.merge(report)
    doc = restored.to_dict()
    assert doc["tiers"] == {"flex": 2, "default": 2} and doc["flex"]["lines"] == 2
    assert doc["tier_fallback"]["lines"] == 2 and doc["capacity_refused"] == 4


def test_a_live_result_counts_as_its_output_line_does() -> None:
    result = Result(0, "c", 200, "r", {"model": "o4-mini", "usage": USAGE, "service_tier": "flex"}, None,
                    attempts=2, model="o4-mini", tier="flex", capacity_refused=1)
    live, from_line = Report(builtin_prices()), Report(builtin_prices())
    live.add_result(result)
    from_line.add_record(orjson.loads(result.encode("run")))
    assert live.to_dict()["flex"] == from_line.to_dict()["flex"]
    assert live.to_dict()["capacity_refused"] == from_line.to_dict()["capacity_refused"] == 1
