from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from batchrun.errors import InputFileError
from batchrun.reader import read_jobs
from batchrun.records import Job, LineError
from batchrun.skip import skip_requests
from batchrun.tokens import counter_for, request_tokens


def lines(tmp_path: Path, content: bytes) -> list[Job | LineError]:
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    return list(read_jobs(path))


def test_envelope_and_bare_body_shapes(tmp_path: Path) -> None:
    items = lines(tmp_path, b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", '
                            b'"body": {"model": "e", "input": "x"}}\n'
                            b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}\n')
    assert [type(i) for i in items] == [Job, Job]
    first, second = items
    assert isinstance(first, Job) and isinstance(second, Job)
    assert (first.custom_id, first.url, first.model, first.index, first.line_no) == ("a", "/v1/embeddings", "e", 0, 1)
    assert orjson.loads(first.body) == {"model": "e", "input": "x"}
    assert (second.custom_id, second.url, second.model, second.index) == ("line-2", "/v1/chat/completions", "m", 1)
    assert orjson.loads(second.body)["messages"][0]["content"] == "hi"


@pytest.mark.parametrize("envelope", [False, True])
def test_stream_false_is_sent(tmp_path: Path, envelope: bool) -> None:
    body = {"model": "m", "stream": False}
    (job,) = lines(tmp_path, orjson.dumps({"custom_id": "a", "body": body} if envelope else body) + b"\n")
    assert isinstance(job, Job) and orjson.loads(job.body)["stream"] is False


def test_envelope_defaults_method_and_url(tmp_path: Path) -> None:
    (job,) = lines(tmp_path, b'{"custom_id": "a", "body": {"model": "m"}}\n')
    assert isinstance(job, Job) and job.url == "/v1/chat/completions"


def test_blank_lines_bom_and_crlf(tmp_path: Path) -> None:
    items = lines(tmp_path, b'\xef\xbb\xbf{"model": "m"}\r\n\r\n   \n{"model": "n"}\r\n\n')
    assert [(i.custom_id, i.index, i.line_no) for i in items] == [("line-1", 0, 1), ("line-4", 1, 4)]
    assert all(isinstance(i, Job) for i in items)


def test_last_line_without_newline(tmp_path: Path) -> None:
    items = lines(tmp_path, b'{"model": "m"}\n{"model": "n"}')
    assert [i.custom_id for i in items] == ["line-1", "line-2"]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b'{"model": "m"', "not valid JSON"),
        (b'\xff\xfe{"model": 1}', "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"text"', "expected a JSON object, got str"),
        (b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}', "body is missing"),
        (b'{"custom_id": "a", "body": [1]}', "body must be a JSON object"),
        (b'{"custom_id": 7, "body": {}}', "custom_id must be a non-empty string"),
        (b'{"custom_id": "", "body": {}}', "custom_id must be a non-empty string"),
        (b'{"custom_id": "a", "method": "GET", "body": {}}', "method must be POST"),
        (b'{"custom_id": "a", "url": "v1/chat", "body": {}}', "url must be a path"),
        (b'{"custom_id": "a", "url": 5, "body": {}}', "url must be a path"),
        (b'{"custom_id": "a", "url": "http://evil/v1/chat/completions", "body": {}}', "url must be a path"),
        (b'{"custom_id": "a", "url": "//evil/v1/chat/completions", "body": {}}', "not a '//host' address"),
        (b'{"custom_id": "a", "url": "/v1/chat completions", "body": {}}', "url has ' ', which a URL cannot hold"),
        (b'{"custom_id": "a", "url": "/v1/chat/completions\\r\\nX-Evil: 1", "body": {}}', "has '\\r'"),
        (b'{"custom_id": "a", "url": "/v1\\\\..\\\\admin", "body": {}}', "has '\\\\'"),
        (b'{"custom_id": "a", "url": "/v1/chat/completions#x", "body": {}}', "has '#'"),
        (b'{"custom_id": "a", "url": "/v1/caf\xc3\xa9", "body": {}}', "has 'é'"),
        (b'{"custom_id": "a", "url": "/v1/%zz", "body": {}}', "'%' not followed by two hex digits"),
        (b'{"custom_id": "a", "url": "/v1/../admin/keys", "body": {}}', "'.' or '..' segments"),
        (b'{"custom_id": "a", "url": "/v1/%2E%2e/admin", "body": {}}', "'.' or '..' segments"),
        (b'{"custom_id": "a", "url": "/v1/./chat", "body": {}}', "'.' or '..' segments"),
        (b'{"custom_id": "a", "url": "/v1/..", "body": {}}', "'.' or '..' segments"),
        (b'{"custom_id": "a", "url": "/v1/..%2fadmin", "body": {}}', "an encoded '/'"),
        (b'{"model": "m", "stream": true}', "stream=true is not supported"),
        # lax readers (pydantic's booleans, as vLLM's) take all of these for true
        (b'{"model": "m", "stream": "true"}', 'stream="true" is not supported'),
        (b'{"model": "m", "stream": "True"}', 'stream="True" is not supported'),
        (b'{"model": "m", "stream": "yes"}', 'stream="yes" is not supported'),
        (b'{"model": "m", "stream": "on"}', 'stream="on" is not supported'),
        (b'{"model": "m", "stream": 1}', "stream=1 is not supported"),
        (b'{"model": "m", "stream": null}', "stream=null is not supported"),
        (b'{"model": "m", "stream": [[[[true]]]]}', "stream=an array is not supported"),
        (b'{"custom_id": "a", "body": {"model": "m", "stream": "1"}}', 'stream="1" is not supported'),
        (b'{"custom_id": "a", "url": "/v1/..;/admin", "body": {}}', "must not have ';' in its path"),
        (b'{"custom_id": "a", "url": "/v1/chat;x=1/completions", "body": {}}', "must not have ';' in its path"),
        (b'{"custom_id": "a", "url": "/v1/.;/chat", "body": {}}', "must not have ';' in its path"),
    ],
)
def test_bad_lines_become_errors_with_file_and_line(tmp_path: Path, line: bytes, fragment: str) -> None:
    items = lines(tmp_path, b'{"model": "ok"}\n' + line + b'\n{"model": "ok2"}\n')
    assert [type(i) for i in items] == [Job, LineError, Job]
    error = items[1]
    assert isinstance(error, LineError)
    assert error.code == "invalid_request_line"
    assert error.message.startswith(f"{tmp_path / 'in.jsonl'}:2: ")
    assert fragment in error.message
    assert error.index == 1 and error.line_no == 2


@pytest.mark.parametrize("url", ["/v1/chat/completions", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01",
                                 "/v1/files/file-abc:123/content", "/v1/x%20y", "/v1/.well-known/x", "/v1/x?next=/../y",
                                 "/v1/x%3By", "/v1/chat/completions?a=1;b=2"])
def test_urls_that_stay_below_the_base_url_are_accepted(tmp_path: Path, url: str) -> None:
    (job,) = lines(tmp_path, orjson.dumps({"custom_id": "a", "url": url, "body": {"model": "m"}}) + b"\n")
    assert isinstance(job, Job) and job.url == url


def test_bad_envelope_keeps_its_custom_id(tmp_path: Path) -> None:
    (error,) = lines(tmp_path, b'{"custom_id": "mine", "method": "PUT", "body": {}}\n')
    assert isinstance(error, LineError) and error.custom_id == "mine"


def test_duplicate_custom_id(tmp_path: Path) -> None:
    items = lines(tmp_path, b'{"custom_id": "a", "body": {}}\n{"custom_id": "b", "body": {}}\n{"custom_id": "a", "body": {}}\n')
    assert [type(i) for i in items] == [Job, Job, LineError]
    dup = items[2]
    assert isinstance(dup, LineError)
    assert dup.code == "duplicate_custom_id" and dup.custom_id == "a" and ":3:" in dup.message


def test_explicit_id_clashing_with_a_bare_line_id(tmp_path: Path) -> None:
    items = lines(tmp_path, b'{"model": "m"}\n{"custom_id": "line-1", "body": {}}\n')
    assert isinstance(items[1], LineError) and items[1].code == "duplicate_custom_id"


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    assert lines(tmp_path, b"") == []


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
)
def test_unopenable_input(tmp_path: Path, make, fragment: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "in.jsonl"
    make(path)
    with pytest.raises(InputFileError, match=fragment):
        list(read_jobs(path))


_MIXED = [
    b'\xef\xbb\xbf{"custom_id": "a", "body": {"model": "m"}}\n',   # a BOM on line 1
    b"\n", b"   \r\n",                                                # blank lines count for no request
    b'{"custom_id": "b", "body": {"model": "m"}}\r\n',
    b'{"custom_id": "a", "body": {"model": "m"}}\n',                  # a duplicate of line 1
    b"not json\n", b"[1, 2]\n",
    b'{"model": "m", "messages": []}\n',                              # a bare body: line-N
    b'{"custom_id": "", "body": {"model": "m"}}\n',                   # an empty id: line-N
    b'{"custom_id": "line-10", "body": {"model": "m"}}\n',            # the fallback id of line 10, taken
    b'{"custom_id": "b", "body": "x"}\n',                             # a duplicate id on a bad line
    b'{"custom_id": "c", "body": {"model": "m"}}',                    # no final newline
]


@pytest.mark.parametrize("skipped", range(10))
def test_skipping_requests_then_reading_on_is_reading_from_the_start(tmp_path: Path, skipped: int) -> None:
    """A resume reads the finished lines for their ids only (`skip_requests`), then goes on:
    every later line comes out as a read from the start gives it, duplicates included."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(_MIXED))
    everything = list(read_jobs(path))
    position = skip_requests(path, skipped, limit=path.stat().st_size)
    assert position.index == skipped
    assert list(read_jobs(path, path.stat().st_size, start=position)) == everything[skipped:]


@pytest.mark.parametrize(
    ("url", "body", "cap"),
    [
        ("/v1/chat/completions", {"max_tokens": 100, "n": 3}, 300),            # every choice may use the cap
        ("/v1/chat/completions", {"max_completion_tokens": 50, "max_tokens": 9}, 50),
        ("/v1/chat/completions", {"max_tokens": -5}, None),                    # refused by the server: no cap
        ("/v1/chat/completions", {"max_tokens": True}, None),
        ("/v1/chat/completions", {"max_output_tokens": 70}, None),             # not a chat field
        ("/v1/responses", {"max_output_tokens": 70, "max_tokens": 9}, 70),
        ("/v1/completions", {"n": 2}, 32),                                     # 16 when absent
        ("/v1/embeddings", {"input": "x"}, 0),
    ],
)
def test_the_jobs_output_cap_is_the_one_the_budget_and_estimate_read(tmp_path: Path, url: str,
                                                                      body: dict[str, object], cap: int | None) -> None:
    body = {"model": "m", **body}
    (job,) = lines(tmp_path, orjson.dumps({"custom_id": "a", "url": url, "body": body}) + b"\n")
    assert isinstance(job, Job) and job.max_output == cap
    assert request_tokens(url, body, counter_for("o200k_base", exact=False)).max_output == cap
