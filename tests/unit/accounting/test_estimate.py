"""``batchrun estimate`` and the token counts under it: bad lines, counts, cost ranges, accuracy."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from batchrun import tokens
from batchrun.accounting.estimate import Problem, estimate_file
from batchrun.accounting.like import load_like
from batchrun.accounting.pricing import load_prices
from batchrun.cli import main
from batchrun.cli.tables import render_estimate
from batchrun.errors import InputFileError
from batchrun.money import usd
from batchrun.tokens import (
    CL100K,
    DEFAULT_MAX_OUTPUT_TOKENS,
    IMAGE_TOKENS,
    IMAGE_TOKENS_LOW,
    O200K,
    REPLY_PRIMING,
    TOKENS_PER_MESSAGE,
    HeuristicCounter,
    counter_for,
    encoding_for,
    request_tokens,
)

from ...helpers import chat_line, write_jsonl

CHAT = "/v1/chat/completions"

# Exact token counts of these texts, from toktok-rs 0.3.0 (checked identical to tiktoken 0.14.0
# with OpenAI's o200k_base/cl100k_base files, sha256 446a9538… and 223921b7…, on 3,000 texts).
EXACT: dict[str, tuple[str, int, int]] = {  # name: (text, o200k_base, cl100k_base)
    "english": ("The quick brown fox jumps over the lazy dog. Batch jobs run overnight, and the results arrive "
                "in the same order as the requests.", 27, 27),
    "english_long": ("Retries are exponential with full jitter: each wait is drawn uniformly between zero and a cap "
                     "that doubles with every attempt. When the server says how long to wait, that wait is honoured "
                     "instead, plus a little jitter so that requests told the same wait do not return in lockstep. "
                     "Requests that fail for good are written as error records in their place, so the output always "
                     "has one line per input line.", 81, 82),
    "code": ("def retry_after(headers: dict[str, str]) -> float | None:\n    value = headers.get(\"retry-after-ms\")\n"
             "    if value is not None:\n        return float(value) / 1000\n    return None\n", 46, 46),
    "json": ('{"id": 12345, "name": "batch-2024-07-18", "tags": ["alpha", "beta"], "score": 0.875, "ok": true}',
             42, 42),
    "numbers": ("Invoice 2024-11-26: 1,234 items at $56.78 each, total $70,066.52 (order #987654321).", 35, 35),
    "german": ("Die Ergebnisse werden in derselben Reihenfolge geschrieben wie die Anfragen, auch wenn die Antworten "
               "später eintreffen.", 22, 31),
    "french": ("Les résultats sont écrits dans le même ordre que les requêtes, même lorsque les réponses arrivent "
               "dans le désordre.", 24, 28),
    "russian": ("Результаты записываются в том же порядке, что и запросы, даже если ответы приходят не по порядку.",
                26, 37),
    "chinese": ("结果按照请求的顺序写入，即使响应的到达顺序不同。每一行输入都对应一行输出。", 28, 37),
    "japanese": ("結果はリクエストと同じ順序で書き込まれます。応答が順不同で届いても同じです。", 32, 43),
    "korean": ("결과는 요청과 같은 순서로 기록되며, 응답이 순서 없이 도착하더라도 마찬가지입니다.", 29, 45),
    "arabic": ("تتم كتابة النتائج بنفس ترتيب الطلبات، حتى عندما تصل الردود بترتيب مختلف.", 20, 55),
    "emoji": ("Great job! 🎉🚀 Let's ship it 👍 — see you tomorrow ☀️", 18, 22),
}
ENGLISH_LIKE = ("english", "english_long", "code", "json", "numbers")


# -- every kind of bad line -------------------------------------------------------------------------

def msg(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


BAD_FILE_LINES: list[bytes] = [
    b"\xef\xbb\xbf" + orjson.dumps(chat_line(1, max_tokens=100)),                                 # 1 ok, after a BOM
    b"",                                                                                           # 2 blank
    b"{not json",                                                                                  # 3
    b"[1, 2, 3]",                                                                                  # 4
    b'"just a string"',                                                                            # 5
    orjson.dumps({"custom_id": 7, "body": {"model": "gpt-4o-mini", "messages": msg("x")}}),        # 6
    orjson.dumps({"custom_id": "", "body": {"model": "gpt-4o-mini", "messages": msg("x")}}),       # 7
    orjson.dumps({**chat_line(8), "method": "GET"}),                                               # 8
    orjson.dumps({**chat_line(9), "url": "v1/chat/completions"}),                                  # 9
    orjson.dumps({"custom_id": "req-10", "url": CHAT}),                                            # 10
    orjson.dumps({"custom_id": "req-11", "body": "text"}),                                         # 11
    orjson.dumps(chat_line(12, stream=True)),                                                      # 12
    orjson.dumps({"model": "gpt-4o-mini", "messages": msg("x"), "stream": True}),                  # 13
    orjson.dumps(chat_line(1)),                                                                    # 14 duplicate
    orjson.dumps({"custom_id": "req-15", "body": {"messages": msg("no model")}}),                  # 15
    orjson.dumps({"messages": msg("bare, no model")}),                                             # 16
    orjson.dumps({"model": "gpt-4o-mini", "messages": msg("a bare body")}) + b"\r",                # 17 ok, CRLF
    orjson.dumps({"custom_id": "emb-18", "url": "/v1/embeddings",
                  "body": {"model": "text-embedding-3-small", "input": [1, 2, 3, 4]}}),            # 18 ok
    orjson.dumps({"custom_id": "req-19", "body": {"model": 5, "messages": msg("x")}}),             # 19
]
EXPECTED_PROBLEMS = {  # line: (code, words in the message)
    3: ("invalid_request_line", "not valid JSON"),
    4: ("invalid_request_line", "expected a JSON object, got list"),
    5: ("invalid_request_line", "expected a JSON object, got str"),
    6: ("invalid_request_line", "custom_id must be a non-empty string"),
    7: ("invalid_request_line", "custom_id must be a non-empty string"),
    8: ("invalid_request_line", "method must be POST"),
    9: ("invalid_request_line", "url must be a path"),
    10: ("invalid_request_line", "body is missing"),
    11: ("invalid_request_line", "body must be a JSON object"),
    12: ("invalid_request_line", "stream=true"),
    13: ("invalid_request_line", "stream=true"),
    14: ("duplicate_custom_id", "already used"),
    15: ("missing_model", "no model"),
    16: ("missing_model", "no model"),
    19: ("missing_model", "no model"),
}


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\n".join(BAD_FILE_LINES) + b"\n")
    return path


def test_estimate_finds_every_kind_of_bad_line_with_its_line_number(bad_file: Path) -> None:
    seen: list[Problem] = []
    result = estimate_file(bad_file, on_problem=seen.append)
    assert {p.line: p.code for p in seen} == {line: code for line, (code, _) in EXPECTED_PROBLEMS.items()}
    for problem in seen:
        _code, words = EXPECTED_PROBLEMS[problem.line]
        assert problem.message.startswith(f"{bad_file}:{problem.line}: ")
        assert words in problem.message
    assert result.lines == 18 and result.problems == 15 and result.requests == 3
    doc = result.to_dict()
    assert [p["line"] for p in doc["problem_lines"]] == sorted(EXPECTED_PROBLEMS)
    assert doc["by_endpoint"] == {CHAT: 2, "/v1/embeddings": 1}
    assert doc["models"]["gpt-4o-mini"]["requests"] == 2
    assert doc["models"]["text-embedding-3-small"]["input_tokens"] == 4   # token ids count one each


def test_estimate_command_prints_every_bad_line_and_exits_2(bad_file: Path) -> None:
    result = CliRunner().invoke(main, ["estimate", str(bad_file)])
    assert result.exit_code == 2
    for line in EXPECTED_PROBLEMS:
        assert f"{bad_file}:{line}: " in result.stderr
    assert "15 of 18 lines would not be sent" in result.stderr
    assert "3 to send; problem lines: 15" in result.stdout   # the estimate of the rest is still shown


def test_estimate_command_on_a_good_file_exits_0_with_json(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, "Say hello in French.", max_tokens=50) for i in range(10)])
    result = CliRunner().invoke(main, ["estimate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout)
    assert doc["schema"] == "batchrun.estimate/1"
    assert doc["requests"] == 10 and doc["problems"] == 0
    entry = doc["models"]["gpt-4o-mini"]
    assert entry["output_cap_tokens"] == 500 and entry["requests_without_cap"] == 0
    assert doc["cost_usd"]["low"] == pytest.approx(entry["input_tokens"] * 0.15 / 1e6)
    assert doc["cost_usd"]["high"] == pytest.approx((entry["input_tokens"] * 0.15 + 500 * 0.60) / 1e6)


def test_estimate_command_cannot_read_the_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["estimate", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "no such file" in result.output
    with pytest.raises(InputFileError):
        estimate_file(tmp_path)  # a directory


# -- counts and cost ranges -----------------------------------------------------------------------

def test_cost_range_uses_the_caps_and_the_stated_default(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [
        {"custom_id": "a", "url": "/v1/embeddings", "body": {"model": "text-embedding-3-small",
                                                             "input": [[1] * 1000, [2] * 500]}},
        {"custom_id": "b", "url": "/v1/completions", "body": {"model": "gpt-3.5-turbo-instruct", "prompt": [7] * 100}},
        {"custom_id": "c", "url": "/v1/completions", "body": {"model": "gpt-3.5-turbo-instruct", "prompt": [7] * 100,
                                                              "max_tokens": 10, "n": 3}},
        chat_line(4, max_completion_tokens=200, n=2),
        chat_line(5),
    ])
    doc = estimate_file(path, default_max_output=1000).to_dict()
    embed, instruct, mini = (doc["models"][m] for m in ("text-embedding-3-small", "gpt-3.5-turbo-instruct",
                                                        "gpt-4o-mini"))
    assert embed["input_tokens"] == 1500 and embed["output_cap_tokens"] == 0
    assert embed["cost_usd"] == {"low": pytest.approx(1500 * 0.02 / 1e6), "high": pytest.approx(1500 * 0.02 / 1e6),
                                 "expected": pytest.approx(1500 * 0.02 / 1e6)}
    assert instruct["input_tokens"] == 200 and instruct["output_cap_tokens"] == 16 + 30  # legacy default 16
    assert instruct["cost_usd"]["high"] == pytest.approx((200 * 1.5 + 46 * 2.0) / 1e6)
    assert mini["output_cap_tokens"] == 400 + 1000 and mini["requests_without_cap"] == 1
    # Expected: a typical answer (500 tokens) within each cap: 200 x 2 choices, then 500 of the default 1,000.
    assert (instruct["expected_output_tokens"], mini["expected_output_tokens"]) == (16 + 30, 400 + 500)
    low, high, expected = (sum(m["cost_usd"][end] for m in doc["models"].values()) for end in ("low", "high", "expected"))
    assert doc["cost_usd"] == {"low": pytest.approx(low), "high": pytest.approx(high), "expected": pytest.approx(expected)}
    assert any("assumes 1,000 output tokens" in note for note in doc["warnings"])


def test_the_expected_cost_assumes_typical_answers_and_is_labelled_so(tmp_path: Path) -> None:
    """Between the range's ends, nearer what a run costs: 500 output tokens a request, 1,500 for
    a reasoning model, none past a cap. One warning for the requests without a cap, all models."""
    path = write_jsonl(tmp_path / "in.jsonl", [*(chat_line(i) for i in range(4)),
                                               *({**chat_line(i), "body": {**chat_line(i)["body"], "model": "o4-mini"}}
                                                 for i in range(4, 6)),
                                               chat_line(6, max_tokens=100)])
    doc = estimate_file(path).to_dict()
    mini, o4 = doc["models"]["gpt-4o-mini"], doc["models"]["o4-mini"]
    assert mini["expected_output_tokens"] == 4 * 500 + 100 and o4["expected_output_tokens"] == 2 * 1500
    assert doc["tokens"]["output_expected"] == 4 * 500 + 100 + 2 * 1500
    cost = doc["cost_usd"]
    assert cost["low"] < cost["expected"] < cost["high"]
    assert doc["expected_output"] == {"answer_tokens": 500, "reasoning_tokens": 1000, "like": None}
    uncapped = [note for note in doc["warnings"] if "set no max_tokens" in note]
    assert uncapped == ["6 requests (gpt-4o-mini 4, o4-mini 2) set no max_tokens: the high estimate assumes 4,096 "
                        "output tokens each (--default-max-tokens)"]
    text = " ".join(render_estimate(doc).split())
    assert f"expected {usd(cost['expected'])} sent online" in text and "(assumed: typical answers of 500" in text


def test_an_unpriced_model_has_no_range_and_a_warning(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [
        {"model": "my-llama", "messages": msg("hi"), "max_tokens": 10}, chat_line(2, max_tokens=10)])
    doc = estimate_file(path).to_dict()
    assert doc["models"]["my-llama"]["cost_usd"] is None and doc["cost_usd"] is None
    assert doc["cost_usd_priced"]["high"] == doc["models"]["gpt-4o-mini"]["cost_usd"]["high"]
    assert any("no price for model 'my-llama'" in note for note in doc["warnings"])
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {"my-llama": {"input": 1, "output": 1}}}')
    priced = estimate_file(path, load_prices(prices)).to_dict()
    assert priced["cost_usd"] is not None


def test_default_max_output_is_documented_and_used() -> None:
    assert DEFAULT_MAX_OUTPUT_TOKENS == 4096
    counted = request_tokens(CHAT, {"model": "gpt-4o-mini", "messages": msg("hi")}, HeuristicCounter(O200K))
    assert counted.max_output is None   # the estimate substitutes the default, the count does not


# -- what counts as input --------------------------------------------------------------------------

class Letters:
    """A counter that counts characters, so the expected totals are easy to read."""

    name = "letters"
    exact = True

    def count(self, text: str) -> int:
        return len(text)

    def bound(self, text: str) -> int:
        return len(text) + 1


def test_chat_counts_roles_contents_parts_names_tools_and_images() -> None:
    body: dict[str, Any] = {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "abc"},
        {"role": "user", "name": "bob", "content": [
            {"type": "text", "text": "hello"},
            {"type": "image_url", "image_url": {"url": "data:...", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function",
                                               "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "42"},
    ], "tools": [{"type": "function", "function": {"name": "f"}}], "max_tokens": 7}
    counted = request_tokens(CHAT, body, Letters())
    tool_calls = len(orjson.dumps(body["messages"][2]["tool_calls"]))
    tools = len(orjson.dumps(body["tools"]))
    text = (6 + 3) + (4 + 3 + 5) + 9 + (4 + 2 + 2)   # roles and contents, name, tool message
    expected = 4 * TOKENS_PER_MESSAGE + 1 + REPLY_PRIMING + text + tool_calls + tools + IMAGE_TOKENS_LOW + IMAGE_TOKENS
    assert counted.input == expected
    assert counted.images == 2 and counted.max_output == 7
    assert counted.input_bound > counted.input   # each text adds its own +1 in Letters.bound
    assert request_tokens(CHAT, body, Letters(), estimate=False).input == counted.input_bound


def test_responses_counts_instructions_and_input_items() -> None:
    body = {"model": "gpt-4.1", "instructions": "be brief", "max_output_tokens": 64, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hello"}, {"type": "input_image", "image_url": "x"}]},
        {"type": "function_call_output", "call_id": "c", "output": "done"}]}
    counted = request_tokens("/v1/responses", body, Letters())
    assert counted.input == 8 + 2 * TOKENS_PER_MESSAGE + (4 + 5) + IMAGE_TOKENS + 4 + REPLY_PRIMING
    assert counted.max_output == 64
    plain = request_tokens("/v1/responses", {"model": "gpt-4.1", "input": "hi"}, Letters())
    assert plain.input == TOKENS_PER_MESSAGE + 2 + REPLY_PRIMING and plain.max_output is None


@pytest.mark.parametrize(("url", "body", "expected"), [
    ("/v1/embeddings", {"input": "abcd"}, 4),
    ("/v1/embeddings", {"input": ["ab", "cde"]}, 5),
    ("/v1/embeddings", {"input": [5, 6, 7]}, 3),
    ("/v1/embeddings", {"input": [[5, 6], [7]]}, 3),
    ("/v1/moderations", {"input": [{"type": "text", "text": "abc"}, {"type": "image_url"}]}, 3),
    ("/v1/completions", {"prompt": ["ab", "c"]}, 3),
    ("/v1/rerank", {"model": "m", "query": "ab", "documents": ["c"]}, len('{"query":"ab","documents":["c"]}')),
])
def test_inputs_of_other_endpoints(url: str, body: dict[str, object], expected: int) -> None:
    assert request_tokens(url, body, Letters()).input == expected


def test_a_base_url_style_path_is_routed_by_its_ending() -> None:
    body = {"input": "abcd"}
    assert request_tokens("/openai/v1/embeddings", body, Letters()).max_output == 0


@pytest.mark.parametrize(("model", "encoding"), [
    ("gpt-4o-mini", O200K), ("gpt-4.1", O200K), ("o3", O200K), ("gpt-5-nano", O200K), ("llama-3", O200K),
    ("gpt-4", CL100K), ("gpt-4-turbo", CL100K), ("gpt-3.5-turbo-0125", CL100K), ("text-embedding-3-small", CL100K),
    (None, O200K),
])
def test_encoding_by_model(model: str | None, encoding: str) -> None:
    assert encoding_for(model) == encoding


# -- the heuristic against exact counts ----------------------------------------------------------

@pytest.mark.parametrize("encoding", [O200K, CL100K])
def test_heuristic_is_close_to_exact_counts(encoding: str) -> None:
    counter = HeuristicCounter(encoding)
    column = 1 if encoding == O200K else 2
    total_exact = total_estimate = 0
    for name, entry in EXACT.items():
        text, exact = entry[0], int(entry[column])
        estimate = counter.count(text)
        total_exact += exact
        total_estimate += estimate
        # Measured on the held-out corpus: English, code and JSON within ~10% at p90; other
        # languages within ~25% at p90 (scripts/calibrate_tokens.py).
        limit = 0.10 if name in ENGLISH_LIKE else 0.35
        assert abs(estimate - exact) <= limit * exact + 1, (name, estimate, exact)
    assert abs(total_estimate - total_exact) <= 0.05 * total_exact


@pytest.mark.parametrize("encoding", [O200K, CL100K])
def test_heuristic_bound_is_never_below_the_exact_count(encoding: str) -> None:
    counter = HeuristicCounter(encoding)
    for text, o200k, cl100k in EXACT.values():
        assert counter.bound(text) >= max(o200k, cl100k)
    assert counter.count("") == 0 and counter.count("a") == 1


def test_the_exact_counter_is_used_when_toktok_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], str]] = []

    def batch_count(texts: list[str], encoding: str, threads: int = 0) -> list[int]:
        calls.append((texts, encoding))
        return [len(t.split()) for t in texts]

    monkeypatch.setitem(sys.modules, "toktok", types.SimpleNamespace(batch_count=batch_count))
    counter_for.cache_clear()
    try:
        counter = counter_for(CL100K)
        assert counter.exact and counter.count("one two three") == 3 and counter.bound("a b") == 2
        assert calls[0] == (["one two three"], CL100K)
        assert not counter_for(O200K, exact=False).exact
    finally:
        counter_for.cache_clear()


def test_without_toktok_the_heuristic_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "toktok", None)  # import fails
    counter_for.cache_clear()
    try:
        counter = counter_for(O200K)
        assert not counter.exact and isinstance(counter, tokens.HeuristicCounter)
    finally:
        counter_for.cache_clear()


def test_the_flex_range_prices_the_lines_that_would_go_on_flex_at_the_batch_rate(tmp_path: Path) -> None:
    rows = [{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "o4-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}},
            {"custom_id": "b", "method": "POST", "url": "/v1/chat/completions",  # no flex for this model
             "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}},
            {"custom_id": "c", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": "text-embedding-3-small", "input": "hi"}}]
    doc = estimate_file(write_jsonl(tmp_path / "in.jsonl", rows)).to_dict()
    assert doc["flex"]["requests"] == 1
    models = doc["models"]
    flexed = models["o4-mini"]["batch_api"]["cost_usd"]
    others = [models[m]["cost_usd"] for m in ("gpt-4o-mini", "text-embedding-3-small")]
    for end in ("low", "high"):
        assert doc["flex"]["cost_usd"][end] == pytest.approx(flexed[end] + sum(o[end] for o in others))


# -- routes: what the response cache holds, and answers like a previous run's -----------------------

class _Held:
    """A cache answering the lines whose custom_id is in ``ids`` (the real one: tests/scenarios/test_estimate_routes.py)."""

    broken = None

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids

    def holds(self, job: Any) -> bool:
        return job.custom_id in self.ids


def test_requests_the_cache_answers_cost_nothing_and_their_saving_is_shown_per_route(tmp_path: Path) -> None:
    lines = [chat_line(i, f"question number {i} " * i, max_tokens=100 + i, model="gpt-5-mini") for i in range(10)]
    cached_ids = {"req-1", "req-4", "req-7"}
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    rest = estimate_file(write_jsonl(tmp_path / "rest.jsonl", [line for line in lines
                                                               if line["custom_id"] not in cached_ids])).to_dict()
    held = estimate_file(write_jsonl(tmp_path / "held.jsonl", [line for line in lines
                                                               if line["custom_id"] in cached_ids])).to_dict()
    doc = estimate_file(path, cache=_Held(cached_ids), cache_dir="my-cache").to_dict()  # type: ignore[arg-type]
    assert doc["cache"]["dir"] == "my-cache" and doc["cache"]["requests"] == 3
    assert doc["models"]["gpt-5-mini"]["cached_requests"] == 3 and doc["requests"] == 10
    for route in ("cost_usd", "batch_api", "flex"):  # what is left to pay: the other 7 requests, on each route
        ours, theirs = (d[route] if route == "cost_usd" else d[route]["cost_usd"] for d in (doc, rest))
        assert ours == pytest.approx(theirs)
    saved = doc["cache"]["saved_usd"]
    assert saved["online"] == pytest.approx(held["cost_usd"])
    assert saved["batch_api"] == pytest.approx(held["batch_api"]["cost_usd"])
    assert saved["flex"] == pytest.approx(held["flex"]["cost_usd"]) and saved["flex"]["high"] > 0
    assert doc["flex"]["requests"] == 7
    assert doc["batch_api"]["queue_tokens"] == rest["batch_api"]["queue_tokens"]  # never submitted in a batch
    text = " ".join(render_estimate(doc).split())
    assert "3 of 10 requests already answered in my-cache, at $0: saving" in text
    assert f"saving {usd(saved['online']['low'])} - {usd(saved['online']['high'])} online" in text


def test_without_a_cache_nothing_is_said_of_one(tmp_path: Path) -> None:
    doc = estimate_file(write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])).to_dict()
    assert doc["cache"] is None and doc["models"]["gpt-4o-mini"]["cached_requests"] == 0
    assert "already answered" not in render_estimate(doc)


def test_like_a_previous_run_expects_its_mean_answers_within_each_cap(tmp_path: Path) -> None:
    """gpt-4o-mini answered 3,000 completion tokens over 10 answers with usage (a dated name, as
    OpenAI bills it): 300 expected a request, 120 for one capped at 120; o4-mini is not in the
    report, so it keeps the typical 1,500, and a warning says so."""
    report = tmp_path / "last.report.json"
    report.write_bytes(orjson.dumps({"schema": "batchrun.report/1", "models": {
        "gpt-4o-mini-2024-07-18": {"succeeded": 11, "responses_without_usage": 1, "tokens": {"completion": 3000}}}}))
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(0), chat_line(1), chat_line(2, max_tokens=120),
                                               {**chat_line(3), "body": {**chat_line(3)["body"], "model": "o4-mini"}}])
    doc = estimate_file(path, like=load_like(report)).to_dict()
    assert doc["models"]["gpt-4o-mini"]["expected_output_tokens"] == 300 + 300 + 120
    assert doc["models"]["o4-mini"]["expected_output_tokens"] == 1500
    assert doc["expected_output"]["like"] == {"report": str(report), "mean_completion_tokens": {"gpt-4o-mini": 300.0},
                                              "assumed": ["o4-mini"]}
    assert any("has no answers of o4-mini" in note for note in doc["warnings"])
    text = " ".join(render_estimate(doc).split())
    assert f"expected (like {report}) {usd(doc['cost_usd']['expected'])} sent online" in text
    assert "mean output tokens there: gpt-4o-mini 300" in text and "for o4-mini, not in it: typical answers" in text
