"""`batchrun label` through the engine: scripted endpoints (httpx.MockTransport) and the
simulator over loopback; round trips, validation, retries of failed rows, resume, memory."""

from __future__ import annotations

import csv
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from batchrun import RunConfig, run_batch
from batchrun.errors import ConfigError, InputFileError
from batchrun.label import (
    FreeText,
    JsonSchema,
    LabelJob,
    LabelOutcome,
    LabelRun,
    Labels,
    RequestSpec,
    label_dataset,
)
from batchrun.label.answers import AnswerSpec
from batchrun.label.template import parse_text_template
from batchrun.simulator import SimulatorConfig, serve

from ...helpers import OnWritten, read_jsonl

BASE = "http://127.0.0.1:9/v1"
SENTIMENT = Labels(("positive", "negative", "neutral"))
Handler = Callable[[httpx.Request], Any]


def chat(content: str | None, **message: Any) -> httpx.Response:
    body = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}
    return httpx.Response(200, json=body)


def prompt_of(request: httpx.Request) -> str:
    return str(orjson.loads(request.content)["messages"][-1]["content"])


def echo(request: httpx.Request) -> httpx.Response:
    return chat(prompt_of(request))


def make_job(data: Path, template: str, answer: AnswerSpec | None = None, out: Path | None = None,
             id_field: str | None = None, **spec: Any) -> LabelJob:
    request = RequestSpec(parse_text_template(template), "gpt-4o-mini", answer or FreeText(), **spec)
    return LabelJob(data, request, out, id_field)


async def label(job: LabelJob, handler: Handler | None = None, base_url: str = BASE, **engine: Any) -> LabelOutcome:
    transport = httpx.MockTransport(handler) if handler is not None else None
    return await label_dataset(job, partial(RunConfig, base_url=base_url, **engine), transport=transport)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


TRICKY = [
    ["id", "text", "note"],
    ["1", 'comma, and "quotes"', "x"],
    ["2", "line one\nline two", ""],
    ["3", "crlf\r\ninside", "日本語 ☕ é"],
    ["4", "🤖 emoji", "last"],
]


async def test_csv_round_trip_keeps_every_value_and_adds_the_answer(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", TRICKY)
    with data.open("a", encoding="utf-8") as f:
        f.write("5,short row\n")  # no note: a missing field the template does not use
    outcome = await label(make_job(data, "{id}: {text}"), echo)
    assert outcome.exit_code == 0 and outcome.output_path == tmp_path / "d.labeled.csv"
    expected = [[*TRICKY[0], "answer", "_error", "_raw"]]
    expected += [[*row, f"{row[0]}: {row[1]}", "", ""] for row in TRICKY[1:]]
    expected.append(["5", "short row", "", "5: short row", "", ""])
    assert read_csv(outcome.output_path) == expected
    assert [line["custom_id"] for line in read_jsonl(tmp_path / "d.labeled.csv.batch/requests.jsonl")] == [
        "line-2", "line-3", "line-5", "line-7", "line-8"]  # the line each row starts on


async def test_jsonl_round_trip_keeps_objects_byte_for_byte(tmp_path: Path) -> None:
    lines = [b'{"text": "caf\\u00e9", "n": 1.0, "nested": {"a": [1, 2]}}', b'{"text": "no other keys"}',
             b'{"text": "x", "extra": null}']
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"\n\n".join(lines) + b"\n")
    outcome = await label(make_job(data, "{text}"), echo)
    written = outcome.output_path.read_bytes().splitlines()
    assert outcome.exit_code == 0 and len(written) == 3
    for original, line in zip(lines, written, strict=False):
        assert line.startswith(original[:-1] + b",")  # the object as it was, new keys after
        assert orjson.loads(line) == {**orjson.loads(original), "answer": orjson.loads(original)["text"],
                                      "_error": None, "_raw": None}


async def test_output_format_follows_the_output_extension(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"text": "a", "n": 2}\n{"text": "b", "tags": ["x"], "n": null}\n')
    outcome = await label(make_job(data, "{text}", out=tmp_path / "out.csv"), echo)
    assert read_csv(outcome.output_path) == [["text", "n", "tags", "answer", "_error", "_raw"],
                                             ["a", "2", "", "a", "", ""], ["b", "", '["x"]', "b", "", ""]]
    csv_data = write_csv(tmp_path / "t.csv", TRICKY)
    outcome = await label(make_job(csv_data, "{text}", out=tmp_path / "out.jsonl"), echo)
    assert read_jsonl(outcome.output_path)[1] == {"id": "2", "text": "line one\nline two", "note": "",
                                                  "answer": "line one\nline two", "_error": None, "_raw": None}


async def test_labels_are_normalised_and_an_answer_outside_the_set_is_an_error(tmp_path: Path) -> None:
    answers = {"a": '{"label": "Positive"}', "b": ' "negative." ', "c": "NEUTRAL", "d": "Positive!!", "e": "mixed"}
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(orjson.loads(request.content))
        return chat(answers[prompt_of(request)])

    data = write_csv(tmp_path / "d.csv", [["text"], *([key] for key in answers)])
    outcome = await label(make_job(data, "{text}", SENTIMENT), handler)
    assert outcome.exit_code == 1
    assert outcome.counts is not None and outcome.counts.errors == Counter({"invalid_label": 2})
    assert read_csv(outcome.output_path)[1:] == [
        ["a", "positive", "", ""], ["b", "negative", "", ""], ["c", "neutral", "", ""],
        ["d", "", "invalid_label: 'Positive!!' is not one of: positive, negative, neutral", "Positive!!"],
        ["e", "", "invalid_label: 'mixed' is not one of: positive, negative, neutral", "mixed"],
    ]
    # Structured outputs with the enum, and the labels in the prompt for endpoints without them.
    assert sent[0]["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == list(SENTIMENT.labels)
    assert sent[0]["messages"][0] == {"role": "system", "content": "Answer with exactly one of: positive, negative, neutral"}
    # The unusable answers are failures of their lines for the engine's --retry-failed and the report,
    # recorded by batchrun beside the 200 they came with: OpenAI's error stays null.
    work = tmp_path / "d.labeled.csv.batch"
    results = read_jsonl(work / "results.jsonl")
    assert all(line["error"] is None and line["response"]["status_code"] == 200 for line in results)
    assert [line["batchrun"].get("error") for line in results][2:] == [
        None, {"code": "invalid_label", "message": "'Positive!!' is not one of: positive, negative, neutral"},
        {"code": "invalid_label", "message": "'mixed' is not one of: positive, negative, neutral"}]
    assert [line["custom_id"] for line in read_jsonl(work / "results.errors.jsonl")] == ["line-5", "line-6"]


async def test_labels_on_the_simulator_with_and_without_structured_outputs(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", [["text"], *([f"review {i}"] for i in range(40))])
    async with serve(SimulatorConfig(latency_ms=1)) as sim:
        structured = await label(make_job(data, "Review: {text}", SENTIMENT), base_url=sim.base_url)
        prompt_only = await label(make_job(data, "Review: {text}", SENTIMENT, out=tmp_path / "plain.csv",
                                           response_format=False), base_url=sim.base_url)
    for outcome in (structured, prompt_only):
        rows = read_csv(outcome.output_path)[1:]
        assert outcome.exit_code == 0 and len(rows) == 40
        assert {row[1] for row in rows} == {"positive", "negative", "neutral"}  # deterministic, varied, in the set
    sent = read_jsonl(tmp_path / "plain.csv.batch/requests.jsonl")[0]["body"]
    assert "response_format" not in sent


INVOICE = {"type": "object", "additionalProperties": False, "required": ["vendor", "total", "currency", "paid"],
           "properties": {"vendor": {"type": "string"}, "total": {"type": "number"},
                          "currency": {"type": "string", "enum": ["USD", "EUR"]}, "paid": {"type": "boolean"}}}


async def test_schema_extraction_on_the_simulator(tmp_path: Path) -> None:
    data = tmp_path / "invoices.jsonl"
    data.write_bytes(b"".join(orjson.dumps({"doc": f"inv-{i}", "text": f"Invoice {i}"}) + b"\n" for i in range(12)))
    async with serve(SimulatorConfig(latency_ms=1)) as sim:
        outcome = await label(make_job(data, "Extract: {text}", JsonSchema(INVOICE), id_field="doc"),
                              base_url=sim.base_url)
    assert outcome.exit_code == 0
    rows = read_jsonl(outcome.output_path)
    assert [row["doc"] for row in rows] == [f"inv-{i}" for i in range(12)]
    for row in rows:
        assert list(row) == ["doc", "text", "vendor", "total", "currency", "paid", "_error", "_raw"]
        assert isinstance(row["vendor"], str) and isinstance(row["total"], float)
        assert row["currency"] in ("USD", "EUR") and isinstance(row["paid"], bool) and row["_error"] is None


async def test_schema_failures_are_error_rows_with_the_raw_answer(tmp_path: Path) -> None:
    answers = {
        "ok": chat('{"vendor": "A", "total": 1, "currency": "USD", "paid": true}'),
        "fenced": chat('```json\n{"vendor": "B", "total": 2.5, "currency": "EUR", "paid": false}\n```'),
        "prose": chat("The vendor is ACME."),
        "wrong": chat('{"vendor": "C", "total": "12", "currency": "USD", "paid": true}'),
        "refused": chat(None, refusal="I can't help with that."),
        "http": httpx.Response(400, json={"error": {"message": "bad request", "type": "invalid_request_error",
                                                    "code": "invalid_value"}}),
    }
    data = write_csv(tmp_path / "d.csv", [["case"], *([case] for case in answers)])
    outcome = await label(make_job(data, "{case}", JsonSchema(INVOICE)), lambda r: answers[prompt_of(r)])
    rows = {row[0]: row[1:] for row in read_csv(outcome.output_path)[1:]}
    assert rows["ok"] == ["A", "1", "USD", "true", "", ""]
    assert rows["fenced"] == ["B", "2.5", "EUR", "false", "", ""]
    assert rows["prose"][:4] == ["", "", "", ""] and rows["prose"][4].startswith("invalid_json: the answer is not JSON")
    assert rows["prose"][5] == "The vendor is ACME."
    mismatch = "schema_mismatch: the answer does not match the schema: $.total: expected number, got string"
    assert rows["wrong"][4:] == [mismatch, '{"vendor": "C", "total": "12", "currency": "USD", "paid": true}']
    assert rows["refused"][4:] == ["no_answer: the model refused: \"I can't help with that.\"", ""]
    assert rows["http"][4:] == ["invalid_value: bad request", ""]
    assert outcome.exit_code == 1


async def test_retry_failed_sends_only_the_failed_rows_again(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        text = prompt_of(request)
        calls[text] += 1
        if calls[text] == 1 and text in ("r2", "r4"):
            return chat("not a label")
        if calls[text] == 1 and text == "r3":
            return httpx.Response(503, json={"error": {"message": "overloaded", "code": "server_error"}})
        return chat("positive")

    data = write_csv(tmp_path / "d.csv", [["text"], *([f"r{i}"] for i in range(1, 7))])
    job = make_job(data, "{text}", SENTIMENT)
    first = await label(job, handler, retry=batchrun_retry(max_attempts=1))
    assert first.exit_code == 1 and first.counts is not None
    assert first.counts.errors == Counter({"invalid_label": 2, "server_error": 1})
    same = await label(job, handler)  # up to date: nothing sent, and it exits as that run did
    assert same.exit_code == 1 and same.stats is None and sum(calls.values()) == 6

    again = await label(job, handler, retry_failed=True)
    assert again.exit_code == 0
    assert calls == Counter({"r1": 1, "r2": 2, "r3": 2, "r4": 2, "r5": 1, "r6": 1})
    assert [row[1:] for row in read_csv(again.output_path)[1:]] == [["positive", "", ""]] * 6


def batchrun_retry(**policy: Any) -> Any:
    from batchrun.config import RetryPolicy

    return RetryPolicy(backoff_base=0, backoff_max=0, **policy)


async def test_rows_stay_in_order_whatever_order_answers_arrive_in(tmp_path: Path) -> None:
    rng = random.Random(5)

    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(rng.random() * 0.004)
        number = int(prompt_of(request).split()[-1])
        return chat(SENTIMENT.labels[number % 3])

    data = write_csv(tmp_path / "d.csv", [["id", "text"], *([f"id-{i}", f"row {i}"] for i in range(400))])
    outcome = await label(make_job(data, "{text}", SENTIMENT, id_field="id"), handler, concurrency=32)
    rows = read_csv(outcome.output_path)[1:]
    assert [row[0] for row in rows] == [f"id-{i}" for i in range(400)]
    assert [row[2] for row in rows] == [SENTIMENT.labels[i % 3] for i in range(400)]


def never_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError("nothing may be sent")


async def test_a_placeholder_a_row_cannot_fill_is_reported_with_its_row_before_anything_is_sent(
        tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"text": "a", "title": "t"}\n{"text": "b"}\n\n{"title": "c"}\n{"text": "d", "title": "e"}\n')
    with pytest.raises(InputFileError) as caught:
        await label(make_job(data, "{title}: {text}"), never_called)
    assert str(caught.value) == (f"{data}: 2 rows cannot be sent; nothing was sent:\n"
                                 f"  {data}:2: row 2 has no value for {{title}}\n"
                                 f"  {data}:4: row 3 has no value for {{text}}")
    work = tmp_path / "d.labeled.jsonl.batch"
    assert not (tmp_path / "d.labeled.jsonl").exists() and not (work / "requests.jsonl").exists()

    csv_data = write_csv(tmp_path / "d.csv", [["text"], ["a"]])
    with pytest.raises(InputFileError, match=r"d.csv:1 \(the header\): the template uses \{title\}, which is not a "
                                             r"column; the columns are: text"):
        await label(make_job(csv_data, "{title}: {text}"), never_called)


async def test_repeated_ids_are_rejected_with_both_rows(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", [["key", "text"], ["a", "x"], ["b", "y"], ["a", "z"], ["", "w"], ["b", "v"]])
    with pytest.raises(InputFileError) as caught:
        await label(make_job(data, "{text}", id_field="key"), never_called)
    assert str(caught.value).splitlines()[1:] == [
        f"  {data}:4: row 3 has id 'a' (key), already used by row 1 (line 2)",
        f"  {data}:5: row 4 has no usable id in 'key' (a non-empty string or an integer), got ''",
        f"  {data}:6: row 5 has id 'b' (key), already used by row 2 (line 3)",
    ]


async def test_an_interrupted_run_resumes_and_refuses_changed_options(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        calls[prompt_of(request)] += 1
        return chat("negative")

    data = write_csv(tmp_path / "d.csv", [["text"], *([f"row {i}"] for i in range(200))])
    job = make_job(data, "{text}", SENTIMENT)
    engine = partial(RunConfig, base_url=BASE, concurrency=4)
    with anyio.CancelScope() as scope:
        await label_dataset(job, engine, transport=httpx.MockTransport(handler), observer=OnWritten(50, scope.cancel))
    assert not job.out.exists() and (tmp_path / "d.labeled.csv.batch/results.jsonl.checkpoint").is_dir()

    changed = make_job(data, "Label: {text}", SENTIMENT)
    with pytest.raises(ConfigError, match=r"changed since the earlier run .* \(the requests differ at row 1 \(line 2\)\)"):
        await label(changed, never_called)
    outcome = await label(job, handler, concurrency=4)
    assert outcome.exit_code == 0 and len(read_csv(job.out)) == 201
    assert sum(calls.values()) <= 200 + 4  # only what was in flight at the stop was sent twice


async def test_a_crash_between_the_batch_and_the_output_sends_nothing_again(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", [["text"], *([f"row {i}"] for i in range(20))])
    job = make_job(data, "{text}", SENTIMENT)
    with LabelRun(job, partial(RunConfig, base_url=BASE)) as run:
        config = run.prepare()
        assert config is not None
        await run_batch(config, transport=httpx.MockTransport(lambda r: chat("Neutral")))
        # … killed here: the batch is finished, the output not yet written.
    assert not job.out.exists()
    outcome = await label(job, never_called)
    assert outcome.exit_code == 0 and outcome.stats is None
    assert [row[1] for row in read_csv(job.out)[1:]] == ["neutral"] * 20


BIG = r'''
import resource, sys
from functools import partial
from pathlib import Path

import orjson
from multidict import CIMultiDict

from batchrun import RunConfig
from batchrun.label import LabelJob, Labels, RequestSpec, label_dataset
from batchrun.label.template import parse_text_template
from batchrun.runner import run_async
from batchrun.transport import Reply

ANSWER = orjson.dumps({"object": "chat.completion", "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"label\": \"ham\"}"},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}})


class Instant:
    """An endpoint in this process that answers every request at once."""

    async def post(self, url, headers, body, timeouts):
        return Reply(200, CIMultiDict(), ANSWER)

    async def aclose(self):
        pass


data, rows = Path(sys.argv[1]), int(sys.argv[2])
with data.open("w") as f:
    f.write("id,text\n")
    for i in range(rows):
        f.write(f'{i},"message {i}, padded to the length of a short review: lorem ipsum dolor sit amet"\n')
job = LabelJob(data, RequestSpec(parse_text_template("Spam? {text}"), "gpt-4o-mini", Labels(("spam", "ham"))))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcome = run_async(partial(label_dataset, job, partial(RunConfig, base_url="http://127.0.0.1:9/v1", concurrency=64),
                            transport=Instant()))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(orjson.dumps({"exit": outcome.exit_code, "rows": outcome.counts.rows, "growth_kib": peak - before,
                    "max_buffered": outcome.stats.max_buffered}).decode())
'''


def test_a_huge_data_file_is_labeled_in_constant_memory(tmp_path: Path) -> None:
    """100,000 rows through render, engine and join, in a process of its own so that its peak
    RSS is its own: the growth stays far below the size of any file the run reads or writes."""
    rows = 100_000
    data = tmp_path / "big.csv"
    done = subprocess.run([sys.executable, "-c", BIG, str(data), str(rows)], capture_output=True, text=True,
                          timeout=120, check=True)
    report = orjson.loads(done.stdout)
    assert report["exit"] == 0 and report["rows"] == rows
    assert report["max_buffered"] <= 1024  # the engine's window
    # Holding either batch file would break the bound, and so would holding the rows: 100,000
    # parsed rows take well over 24 MiB as Python objects.
    work = tmp_path / "big.labeled.csv.batch"
    bound = 24 * 1024 * 1024
    assert min((work / "requests.jsonl").stat().st_size, (work / "results.jsonl").stat().st_size) > bound
    assert report["growth_kib"] * 1024 < bound, report  # ru_maxrss is in KiB on Linux
    with (tmp_path / "big.labeled.csv").open(newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["id", "text", "label", "_error", "_raw"]
        count = 0
        for count, row in enumerate(reader, start=1):
            assert row[0] == str(count - 1) and row[2] == "ham"
    assert count == rows
