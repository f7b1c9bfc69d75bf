"""`records`: a result as an output line in OpenAI's Batch output shape (docs/contract.md,
"Output"), read back as an earlier start's line, and why any output line failed."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from batchrun.records import LineError, Result, batch_of, batch_request_id, failure, openai_error

RUN = "0123456789abcdef"
ANSWER = {"model": "gpt-4o-mini-2024-07-18", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}


def line(result: Result) -> dict[str, Any]:
    encoded = result.encode(RUN)
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    return orjson.loads(encoded)  # type: ignore[no-any-return]


def test_a_success() -> None:
    record = line(Result(0, "a", 200, "req_1", ANSWER, None, attempts=2, latency_ms=12.5, started_at=100.0,
                         finished_at=100.5))
    assert record == {"id": record["id"], "custom_id": "a",
                      "response": {"status_code": 200, "request_id": "req_1", "body": ANSWER}, "error": None,
                      "batchrun": {"attempts": 2, "latency_ms": 12.5, "started_at": 100.0, "finished_at": 100.5}}
    assert re.fullmatch(r"batch_req_[0-9a-f]{24}", record["id"])


def test_a_failure_on_its_http_status_shows_the_response_and_error_null() -> None:
    body = {"error": {"message": "bad", "code": "invalid_value"}}
    record = line(Result(1, "b", 400, "req_2", body, {"code": "invalid_value", "message": "bad"}, attempts=1))
    assert record["error"] is None and record["response"]["status_code"] == 400
    assert record["batchrun"]["error"] == {"code": "invalid_value", "message": "bad"}


def test_a_failure_without_an_answer_has_no_response() -> None:
    record = line(Result(2, "c", None, None, None, {"code": "request_timeout", "message": "no answer in 60 s"},
                         attempts=6, unanswered=5))
    assert record["response"] is None and record["error"] == {"code": "request_timeout", "message": "no answer in 60 s"}
    assert record["batchrun"]["unanswered"] == 5 and "error" not in record["batchrun"]


def test_a_2xx_that_could_not_be_used_keeps_its_response_and_says_why() -> None:
    record = line(Result(3, "d", 200, "req_3", {"object": "x"}, {"code": "invalid_response", "message": "no choices"}))
    assert record["response"]["body"] == {"object": "x"} and record["error"]["code"] == "invalid_response"


def test_ids_are_the_runs_own_and_the_same_at_every_start() -> None:
    first = line(Result(4, "e", 200, None, ANSWER, None))
    again = line(Result(4, "e", 200, None, ANSWER, None))
    other_run = orjson.loads(Result(4, "e", 200, None, ANSWER, None).encode("fedcba9876543210"))
    other_line = line(Result(5, "e", 200, None, ANSWER, None))
    assert first["id"] == again["id"] == batch_request_id(RUN, 4, "e")
    assert first["id"] != other_run["id"] and first["id"] != other_line["id"]
    # No x-request-id from the server: one derived from the line's id, a string as OpenAI's is.
    assert first["response"]["request_id"] == "req_batchrun_" + first["id"].removeprefix("batch_req_")


@pytest.mark.parametrize(("extra", "key", "value"), [
    ({"rate_limited": 3}, "rate_limited", 3),
    ({"wire_ms": 40.0}, "wire_ms", 40.0),
    ({"waited_ms": 7.0}, "waited_ms", 7.0),
    ({"batch_id": "batch_1"}, "batch_id", "batch_1"),
])
def test_optional_keys_appear_only_when_set(extra: dict[str, Any], key: str, value: object) -> None:
    assert key not in line(Result(0, "a", 200, "r", ANSWER, None))["batchrun"]
    assert line(Result(0, "a", 200, "r", ANSWER, None, **extra))["batchrun"][key] == value


def test_a_body_too_deep_to_write_back_becomes_invalid_response() -> None:
    deep: Any = []
    for _ in range(300):  # orjson reads deeper than it writes
        deep = [deep]
    result = Result(0, "a", 200, "r", {"choices": deep}, None)
    record = line(result)
    assert record["response"]["body"] is None and record["error"]["code"] == "invalid_response"
    assert not result.ok


def test_the_line_is_encoded_once() -> None:
    result = Result(0, "a", 200, "r", ANSWER, None)
    encoded = result.encode(RUN)
    result.body = {"changed": True}
    assert result.encode(RUN) is encoded


@pytest.mark.parametrize("result", [
    Result(0, "a", 200, "req_1", ANSWER, None, attempts=2, latency_ms=3.0, started_at=1.0, finished_at=2.0,
           rate_limited=1, wire_ms=9.0, waited_ms=4.0, unanswered=1, batch_id="batch_9"),
    Result(1, "b", 429, "req_2", {"error": {"code": "rate_limit_exceeded"}},
           {"code": "rate_limit_exceeded", "message": "slow down"}, attempts=6),
    Result(2, "c", None, None, None, {"code": "connection_error", "message": "refused"}, attempts=1),
])
def test_a_line_read_back_is_the_result_that_wrote_it(result: Result) -> None:
    encoded = result.encode(RUN)
    back = Result.from_line(result.index, encoded)
    assert back.carried_over and back.line == encoded and back.encode("another run") == encoded
    for name in ("custom_id", "status_code", "request_id", "body", "error", "attempts", "latency_ms", "started_at",
                 "finished_at", "rate_limited", "wire_ms", "waited_ms", "unanswered", "batch_id"):
        assert getattr(back, name) == getattr(result, name), name
    assert back.model == (ANSWER["model"] if result.ok else None)


@pytest.mark.parametrize("torn", [b'{"custom_id": 5}\n', b"[1]\n", b'{"id": "x"}\n'])
def test_a_line_that_is_no_output_record_is_refused(torn: bytes) -> None:
    with pytest.raises(ValueError):
        Result.from_line(0, torn)


def test_a_result_waiting_for_its_turn_sheds_its_body_but_not_what_is_counted() -> None:
    cut = {**ANSWER, "choices": [{"message": {"content": ""}, "finish_reason": "length"}]}
    result = Result(0, "a", 200, "r", cut, None)
    result.encode(RUN)
    result.shed_body()
    assert result.body is None and result.model == "gpt-4o-mini-2024-07-18"
    usage = result.read_usage()
    assert usage is not None and usage.total == 7 and result.read_cut() is True


def test_a_line_error_is_a_failure_without_a_response() -> None:
    error = LineError(3, 4, "line-4", "invalid_request_line", "in.jsonl:4: not valid JSON")
    record = line(Result.from_line_error(error))
    assert record["custom_id"] == "line-4" and record["response"] is None
    assert record["error"] == {"code": "invalid_request_line", "message": "in.jsonl:4: not valid JSON"}
    assert record["batchrun"]["attempts"] == 0


@pytest.mark.parametrize(("record", "expected"), [
    ({"error": None, "response": {"status_code": 200, "body": {}}}, None),
    ({"error": {"code": "timeout", "message": "m"}, "response": None}, {"code": "timeout", "message": "m"}),
    # batchrun's own reading of an HTTP failure
    ({"error": None, "response": {"status_code": 400}, "batchrun": {"error": {"code": "bad", "message": "no"}}},
     {"code": "bad", "message": "no"}),
    # OpenAI's error file: the status and the body's error
    ({"error": None, "response": {"status_code": 400, "body": {"error": {"code": "invalid_value", "message": "x"}}}},
     {"code": "invalid_value", "message": "x"}),
    ({"error": None, "response": {"status_code": 401, "body": {"error": {"type": "auth", "message": None}}}},
     {"code": "auth", "message": "HTTP 401"}),
    ({"error": None, "response": {"status_code": 503, "body": "<html>"}}, {"code": "http_503", "message": "HTTP 503"}),
    # vLLM writes some errors as a bare string
    ({"error": "engine died", "response": None}, {"code": "error", "message": "engine died"}),
    ({"error": "engine died", "response": {"status_code": 500}}, {"code": "http_500", "message": "engine died"}),
    ({"error": {}, "response": {"status_code": True}}, None),  # a bool is no status
])
def test_why_an_output_line_failed(record: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert failure(record) == expected


def test_openai_error_and_batch_of() -> None:
    assert openai_error(400, {"error": {"code": "c", "type": "t", "message": "m"}}) == ("c", "m")
    assert openai_error(400, {"error": {"type": "t"}}) == ("t", None)
    assert openai_error(404, {"error": {}}) == ("http_404", None)
    assert openai_error(400, {"error": "text"}) is None and openai_error(400, None) is None
    assert batch_of({"batchrun": {"batch_id": "batch_1"}}) == "batch_1"
    assert batch_of({"batchrun": {"batch_id": 5}}) is None and batch_of({}) is None
