"""What a consumer of the output files can rely on, over a real loopback server: OpenAI's Batch
meaning of ``response`` and ``error``, request ids that are always strings, line ids unique to
a run yet stable across its resumes, and answers cut by the output cap counted (and, in
``batchrun label``, reported as such)."""

from __future__ import annotations

import asyncio
import csv
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import orjson

from batchrun import RetryPolicy, RunConfig, run_batch
from batchrun.accounting.report import Report, report_file
from batchrun.cli.summary import format_summary
from batchrun.label import LabelJob, Labels, RequestSpec, label_dataset
from batchrun.label.template import parse_text_template
from batchrun.records import Result, batch_request_id

from ..helpers import OnWritten, chat_line, read_jsonl, write_jsonl
from ..rawserver import RawServer, Seen, chat_answer, error_body, http, replying

FAST = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.005)


def question(i: int) -> str:
    return f"question {i}"


def ok(seen: Seen) -> bytes:
    return http(200, orjson.dumps(chat_answer(seen)), {"x-request-id": "req_raw"})


def without_request_id(seen: Seen) -> bytes:
    return http(200, orjson.dumps(chat_answer(seen)))


def cut(body: dict[str, Any]) -> dict[str, Any]:
    """A chat answer whose only choice stopped at the output cap, empty (a reasoning model)."""
    body["choices"][0].update(message={"role": "assistant", "content": ""}, finish_reason="length")
    return body


# -- response and error --------------------------------------------------------------------------


async def test_an_http_error_keeps_its_response_and_error_is_null_yet_counts_as_a_failure(tmp_path: Path) -> None:
    """Lines 1 and 4 are refused with a 400, line 2's connection closes unanswered every time:
    only line 2 has an ``error``; all three are in the errors file and counted as failures, by
    the run and by ``batchrun report`` on the file alike; ``--retry-failed`` sends exactly them."""
    def script(seen: Seen, n: int) -> bytes:
        if seen.text in (question(1), question(4)):
            return http(400, error_body(f"bad {seen.text}", code="invalid_value"), {"x-request-id": "req_400"})
        return ok(seen)

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.text == question(2):
            return False  # closed without an answer
        return await answer(seen, writer)

    answer = replying(script)
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(6)])
    with RawServer(handler) as server:
        config = RunConfig(source, base_url=server.base_url, concurrency=3, retry=FAST, outage_threshold=0)
        stats = await run_batch(config)
    assert stats.exit_code == 1 and stats.failed == 3
    out = read_jsonl(config.out)
    for i in (1, 4):
        o = out[i]
        assert o["error"] is None
        assert o["response"]["status_code"] == 400 and o["response"]["request_id"] == "req_400"
        assert o["response"]["body"]["error"]["message"] == f"bad {question(i)}"  # the server's body, kept
        assert o["batchrun"]["error"] == {"code": "invalid_value", "message": f"bad {question(i)}"}
    assert out[2]["response"] is None and out[2]["error"]["code"] == "connection_error"
    assert all(o["error"] is None and o["response"]["status_code"] == 200 for o in (out[0], out[3], out[5]))
    assert [o["custom_id"] for o in read_jsonl(config.errors_path)] == ["req-1", "req-2", "req-4"]

    saved = orjson.loads(config.report_path.read_bytes())
    from_file = report_file(config.out).to_dict()
    for doc in (saved, from_file):
        assert doc["requests"]["succeeded"] == 3 and doc["requests"]["failed"] == 3
        assert doc["requests"]["by_error_code"] == {"invalid_value": 2, "connection_error": 1}

    with RawServer(replying(lambda seen, n: ok(seen))) as server:
        config = RunConfig(source, base_url=server.base_url, retry=FAST, retry_failed=True)
        stats = await run_batch(config)
        assert sorted(seen.text for seen in server.seen) == [question(1), question(2), question(4)]
    assert stats.exit_code == 0 and config.errors_path.read_bytes() == b""
    assert all(o["error"] is None and o["response"]["status_code"] == 200 for o in read_jsonl(config.out))


# -- request ids and line ids --------------------------------------------------------------------


def ids(path: Path) -> list[str]:
    return [o["id"] for o in read_jsonl(path)]


async def test_ids_are_the_run_s_own_and_stay_the_same_across_its_resume(tmp_path: Path) -> None:
    """No ``x-request-id`` from the server: each line's ``request_id`` is still a string. A run
    stopped after 3 lines and resumed writes the ids of the run it started as (and, re-sending
    the rest, the same generated request ids); a second run of the same file (``--restart``)
    writes ids of its own."""
    n = 8
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(n)])
    with RawServer(replying(lambda seen, _: without_request_id(seen))) as server:
        config = RunConfig(source, base_url=server.base_url, concurrency=1, retry=FAST)
        with anyio.CancelScope() as scope:
            await run_batch(config, observer=OnWritten(3, scope.cancel))
        meta = config.checkpoint_path / "meta.json"
        run_id = orjson.loads(meta.read_bytes())["run_id"]
        assert isinstance(run_id, str) and run_id and not config.out.exists()
        stats = await run_batch(config)
        assert stats.exit_code == 0 and stats.carried_over >= 3 and n <= len(server.seen) <= n + 1  # + in flight
        first = read_jsonl(config.out)
        assert [o["id"] for o in first] == [batch_request_id(run_id, i, f"req-{i}") for i in range(n)]
        for o in first:
            request_id = o["response"]["request_id"]
            assert request_id == "req_batchrun_" + o["id"].removeprefix("batch_req_")

        stats = await run_batch(RunConfig(source, base_url=server.base_url, retry=FAST, restart=True))
        assert stats.exit_code == 0
    second = read_jsonl(config.out)
    assert len({o["id"] for o in first} | {o["id"] for o in second}) == 2 * n  # unique per run, and per line
    assert len({o["response"]["request_id"] for o in first + second}) == 2 * n


# -- the output cap -----------------------------------------------------------------------------


RESPONSES_CUT = {"id": "resp_1", "object": "response", "model": "gpt-4o-mini", "status": "incomplete",
                 "incomplete_details": {"reason": "max_output_tokens"}, "output": [],
                 "usage": {"input_tokens": 3, "output_tokens": 16, "total_tokens": 19}}
COMPLETION_CUT = {"id": "cmpl-1", "object": "text_completion", "model": "gpt-3.5-turbo-instruct",
                  "choices": [{"index": 0, "text": "Once upon a", "finish_reason": "length"}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}


async def test_answers_cut_by_the_output_cap_are_counted_in_the_report_and_the_summary(tmp_path: Path) -> None:
    """Cut: chat lines 1, 3 and 5 (empty, finish_reason length), a Responses answer left
    incomplete at max_output_tokens, a completion cut at length. A Responses answer incomplete
    for another reason is not counted."""
    rows: list[dict[str, Any]] = [chat_line(i) for i in range(6)]
    rows.append({"custom_id": "resp-cut", "method": "POST", "url": "/v1/responses",
                 "body": {"model": "gpt-4o-mini", "input": "responses cut", "max_output_tokens": 16}})
    rows.append({"custom_id": "resp-filtered", "method": "POST", "url": "/v1/responses",
                 "body": {"model": "gpt-4o-mini", "input": "responses filtered"}})
    rows.append({"custom_id": "cmpl-cut", "method": "POST", "url": "/v1/completions",
                 "body": {"model": "gpt-3.5-turbo-instruct", "prompt": "Once", "max_tokens": 3}})
    source = write_jsonl(tmp_path / "in.jsonl", rows)

    def script(seen: Seen, n: int) -> bytes:
        body = orjson.loads(seen.body)
        if seen.path.endswith("/responses"):
            answer = dict(RESPONSES_CUT)
            if body["input"] == "responses filtered":
                answer["incomplete_details"] = {"reason": "content_filter"}
        elif seen.path.endswith("/completions") and "prompt" in body:
            answer = COMPLETION_CUT
        else:
            answer = chat_answer(seen)
            if seen.text in (question(1), question(3), question(5)):
                answer = cut(answer)
        return http(200, orjson.dumps(answer), {"x-request-id": "req_1"})

    with RawServer(replying(script)) as server:
        config = RunConfig(source, base_url=server.base_url, concurrency=4, retry=FAST)
        stats = await run_batch(config)
    assert stats.exit_code == 0 and stats.report.hit_output_cap == 5
    cut_ids = ["req-1", "req-3", "req-5", "resp-cut", "cmpl-cut"]
    saved = orjson.loads(config.report_path.read_bytes())
    assert saved["hit_output_cap"] == 5 and saved["output_cap_examples"] == cut_ids
    assert report_file(config.out).to_dict()["output_cap_examples"] == cut_ids
    summary = " ".join(format_summary(stats, str(config.report_path)).split())
    assert "5 of 9 answers stopped at the output cap (cut short or empty), such as req-1, req-3, req-5: " in summary
    assert "max_tokens / max_completion_tokens" in summary and "--param max_tokens=N" in summary


def test_a_cut_answer_still_counts_once_its_body_is_let_go() -> None:
    """A result waiting for an earlier line keeps its line, not its body (`Result.shed_body`)."""
    body = cut({"model": "gpt-4o-mini", "choices": [{"index": 0, "message": {}, "finish_reason": "stop"}]})
    waiting = Result(1, "req-1", 200, "req_1", body, None)
    waiting.encode("run")
    waiting.shed_body()
    report = Report()
    report.add_result(waiting)
    assert waiting.body is None and report.hit_output_cap == 1


# -- batchrun label ------------------------------------------------------------------------------


async def test_label_reports_an_answer_cut_by_the_output_cap_as_such_and_keeps_openai_s_error_for_no_response(
        tmp_path: Path) -> None:
    """Rows: a label; an empty answer at the cap; a label cut at the cap; a word not a label;
    a 404. The cut ones are ``output_cap``, not ``invalid_label``; in the work file only batchrun's
    block says so (``error`` stays null: each was answered), and the 404 keeps its response."""
    answers = {"a": ("positive", "stop"), "b": ("", "length"), "c": ("neg", "length"), "d": ("maybe", "stop")}

    def script(seen: Seen, n: int) -> bytes:
        text = orjson.loads(seen.body)["messages"][-1]["content"]
        if text == "e":
            return http(404, error_body("The model does not exist", code="model_not_found"))
        content, finish = answers[text]
        body = chat_answer(seen)
        body["choices"][0].update(message={"role": "assistant", "content": content}, finish_reason=finish)
        return http(200, orjson.dumps(body))

    data = tmp_path / "d.csv"
    data.write_text("text\na\nb\nc\nd\ne\n")
    labels = Labels(("positive", "negative", "neutral"))
    job = LabelJob(data, RequestSpec(parse_text_template("{text}"), "gpt-4o-mini", labels))
    with RawServer(replying(script)) as server:
        outcome = await label_dataset(job, partial(RunConfig, base_url=server.base_url, retry=FAST))
    assert outcome.counts is not None
    assert outcome.counts.errors == {"output_cap": 2, "invalid_label": 1, "model_not_found": 1}
    with (tmp_path / "d.labeled.csv").open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert rows[0] == ["a", "positive", "", ""]
    assert rows[1][:2] == ["b", ""] and rows[1][3] == ""
    assert rows[1][2].startswith("output_cap: the answer is empty: it hit the output cap")
    assert rows[2][2].startswith("output_cap: the answer was cut short") and rows[2][3] == "neg"
    assert rows[3][2].startswith("invalid_label:") and rows[3][3] == "maybe"
    assert rows[4][2] == "model_not_found: The model does not exist"

    work = read_jsonl(tmp_path / "d.labeled.csv.batch" / "results.jsonl")
    assert all(o["error"] is None for o in work)
    assert [o["response"]["status_code"] for o in work] == [200, 200, 200, 200, 404]
    assert [o["batchrun"].get("error", {}).get("code") for o in work] == [
        None, "output_cap", "output_cap", "invalid_label", "model_not_found"]
    errors = read_jsonl(tmp_path / "d.labeled.csv.batch" / "results.errors.jsonl")
    assert [o["custom_id"] for o in errors] == [o["custom_id"] for o in work[1:]]
    doc = report_file(tmp_path / "d.labeled.csv.batch" / "results.jsonl").to_dict()
    assert doc["requests"]["failed"] == 4 and doc["hit_output_cap"] == 2
