from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun import reader
from batchrun.errors import InputFileError
from batchrun.reader import Position, read_jobs, skip_in_steps, skip_requests
from batchrun.records import Job, LineError
from batchrun.tokens import counter_for, request_tokens

from .test_idscan import PARSED, READ_OFF


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


# Valid request lines that start as most files write them, and some that only look like they do
# (`test_idscan.py` says which): what each one's id is, parsed, is what a resume must keep of it.
_LOOKALIKES = READ_OFF + PARSED


def _plain(i: int) -> bytes:
    return orjson.dumps({"custom_id": f"id-{i % 7}", "body": {"model": "m", "messages": []}})


def _taking_a_line_number(n: int) -> bytes:
    """A line whose id is the one a line without one gets at line ``n``."""
    return orjson.dumps({"custom_id": f"line-{n}", "body": {"model": "m"}})


def _kept(path: Path, position: Position) -> tuple[int, int, int, int, list[bool]]:
    """Where a skip stopped, and which ids it kept of any a line of ``path`` can have."""
    candidates = {item.custom_id for item in read_jobs(path)} | {f"line-{n}" for n in range(1, 80)}
    candidates |= {"a", "ab", "d", "h", "k"}
    return (position.offset, position.line_no, position.index, len(position.seen),
            [c in position.seen for c in sorted(candidates)])


def _file(path: Path, lines: list[bytes], ending: bytes = b"\n", last: bool = True) -> Path:
    path.write_bytes(b"".join(line + ending for line in lines)[: None if last or not lines else -len(ending)])
    return path


@pytest.mark.parametrize("lookalike", _LOOKALIKES)
def test_a_line_read_off_or_parsed_keeps_the_id_parsing_gives(tmp_path: Path, lookalike: bytes) -> None:
    path = _file(tmp_path / "in.jsonl", [_plain(1), lookalike, _plain(2)])
    count = 3 - (not lookalike.strip())
    parsed, read_off = (list(skip_in_steps(path, count, valid=valid))[-1] for valid in (False, True))
    assert _kept(path, read_off) == _kept(path, parsed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.one_of(st.integers(0, 20).map(_plain), st.sampled_from(_LOOKALIKES)), max_size=30),
       block=st.sampled_from([16, 60, 200, 1 << 17]), ending=st.sampled_from([b"\n", b"\r\n"]), last=st.booleans(),
       data=st.data())
def test_reading_ids_off_valid_lines_keeps_what_parsing_them_keeps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, picks: list[bytes], block: int, ending: bytes, last: bool,
        data: st.DataObject) -> None:
    """A resume whose skipped lines are known valid reads most ids off the lines' starts, blocks
    at a time: where it stops, and every id it keeps, are those of parsing each line, from the
    start of the file or of a shard's lines, whatever the blocks cut, with CRLF line ends or
    without a newline after the last line."""
    path = _file(tmp_path / "in.jsonl", picks, ending, last)
    monkeypatch.setattr(reader, "_SKIP_BLOCK", block)
    first = data.draw(st.integers(0, len(picks)))
    count = data.draw(st.integers(0, len(picks) - first))
    start = sum(len(line) + len(ending) for line in picks[:first])
    parsed, read_off = (list(skip_in_steps(path, count, origin=Position(start, first, first), valid=valid))[-1]
                        for valid in (False, True))
    assert _kept(path, read_off) == _kept(path, parsed)


def test_lines_across_the_end_of_a_block_are_read_whole(tmp_path: Path) -> None:
    """Blocks of `reader._SKIP_BLOCK` bytes end inside a line: the ids read are the lines', and so
    are those of the last line, which has no newline after it, and of the line the count ends at."""
    lines = [orjson.dumps({"custom_id": f"{i}-" + "x" * (i % 97), "body": {"model": "m"}}) for i in range(3000)]
    path = _file(tmp_path / "in.jsonl", lines, last=False)
    assert path.stat().st_size > 2 * reader._SKIP_BLOCK
    for count in (3000, 2999, 1234):
        parsed, read_off = (list(skip_in_steps(path, count, valid=valid))[-1] for valid in (False, True))
        assert _kept(path, read_off) == _kept(path, parsed)
        assert all(f"{i}-" + "x" * (i % 97) in read_off.seen for i in range(count))


def test_valid_lines_written_as_most_files_write_them_are_not_parsed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes a resume fast: their ids are read off their starts, blocks at a time."""
    def unparsed(line: bytes) -> object:
        raise AssertionError(f"parsed {line!r}")

    path = _file(tmp_path / "in.jsonl", [line for _ in range(300) for line in READ_OFF] + [_plain(0)])
    monkeypatch.setattr(reader, "orjson", SimpleNamespace(loads=unparsed, JSONDecodeError=orjson.JSONDecodeError))
    *_, position = skip_in_steps(path, 300 * len(READ_OFF), valid=True)
    assert position.index == 300 * len(READ_OFF) and position.offset == path.stat().st_size - len(_plain(0)) - 1


def test_without_valid_lines_a_line_that_looks_read_off_is_parsed(tmp_path: Path) -> None:
    """A line that is not JSON may start like a request: its id is its line number's, and only a
    skip told the lines are valid reads them off."""
    path = _file(tmp_path / "in.jsonl", [_plain(1), b'{"custom_id":"a","body":{', _plain(2)])
    *_, position = skip_in_steps(path, 3)
    assert "line-2" in position.seen and "a" not in position.seen


def test_a_line_that_is_not_utf8_is_parsed_even_among_lines_said_valid(tmp_path: Path) -> None:
    path = _file(tmp_path / "in.jsonl", [_plain(1), b'{"custom_id":"\xff","body":{}}', _plain(2)])
    *_, position = skip_in_steps(path, 3, valid=True)
    assert position.index == 3 and "line-2" in position.seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.one_of(st.integers(0, 20).map(_plain), st.sampled_from(_LOOKALIKES),
                                st.integers(1, 12).map(_taking_a_line_number)), max_size=30),
       extra=st.lists(st.sampled_from([b"not json", b'{"model":"m"}', b"   "]), max_size=2),
       window=st.sampled_from([8, 100, 1 << 16]), data=st.data())
def test_reading_on_from_a_skip_is_reading_from_the_start_whatever_ids_it_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, picks: list[bytes], extra: list[bytes], window: int,
        data: st.DataObject) -> None:
    """A skip told how many lines follow it reads them first and keeps only the skipped ids they
    repeat: reading on from it gives every later line as a read from the start does, duplicates
    included — also when more or fewer lines follow than it was told, or one of them has no id of
    its own."""
    path = _file(tmp_path / "in.jsonl", data.draw(st.permutations(picks + extra)))
    monkeypatch.setattr(reader, "_AFTER_WINDOW", window)
    monkeypatch.setattr(reader, "_AFTER_BYTES", data.draw(st.sampled_from([window, 1 << 20])))
    everything = list(read_jobs(path))
    count = data.draw(st.integers(0, len(everything)))
    after = max(0, len(everything) - count + data.draw(st.sampled_from([0, -2, 2])))
    valid = not any(isinstance(item, LineError) and item.code == "invalid_request_line" for item in everything[:count])
    *_, position = skip_in_steps(path, count, path.stat().st_size, valid=valid, after=after)
    assert position.index == count
    assert list(read_jobs(path, path.stat().st_size, start=position)) == everything[count:]


@pytest.mark.parametrize("window", [1 << 16, 60])
def test_a_skip_keeps_only_the_ids_the_lines_after_it_repeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             window: int) -> None:
    """No table of every finished line's id to fill, with blank lines before the later ones, and
    a window that starts inside a line; the later line that repeats one is still refused as a
    duplicate."""
    monkeypatch.setattr(reader, "_AFTER_WINDOW", window)
    skipped = [orjson.dumps({"custom_id": f"done-{i}", "body": {"model": "m"}}) for i in range(500)]
    later = [orjson.dumps({"custom_id": "new", "body": {"model": "m"}}), skipped[7]]
    path = _file(tmp_path / "in.jsonl", [*skipped, b"", b"  ", *later])
    *_, position = skip_in_steps(path, 500, path.stat().st_size, valid=True, after=2)
    assert len(position.seen) == 1 and "done-7" in position.seen
    rest = list(read_jobs(path, path.stat().st_size, start=position))
    assert rest == list(read_jobs(path))[500:] and isinstance(rest[1], LineError)
    assert rest[1].code == "duplicate_custom_id"


def test_a_later_line_without_an_id_of_its_own_is_checked_against_every_skipped_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The id a line without one gets is its line number's, which reading lines back from the end
    does not know: then every skipped id is kept, and a skipped line that took the number's id
    makes the later line a duplicate."""
    path = _file(tmp_path / "in.jsonl", [_taking_a_line_number(3), _plain(1), b'{"model":"m"}'])
    everything = list(read_jobs(path))
    assert isinstance(everything[2], LineError) and everything[2].code == "duplicate_custom_id"
    *_, position = skip_in_steps(path, 2, path.stat().st_size, valid=True, after=1)
    assert list(read_jobs(path, path.stat().st_size, start=position)) == everything[2:]


@pytest.mark.parametrize("told", [1, 6])
def test_lines_after_a_skip_are_checked_whatever_it_was_told_of_them(tmp_path: Path, told: int) -> None:
    """Told one line follows where three do, a skip reads back two: the third from the end, which
    repeats a skipped id, is not among them, so every skipped id is kept after all. Told six,
    more than there are, it reads back every line there is."""
    path = _file(tmp_path / "in.jsonl", [_plain(1), _plain(2), _plain(1), _plain(3), _plain(4)])
    everything = list(read_jobs(path))
    assert isinstance(everything[2], LineError) and everything[2].code == "duplicate_custom_id"
    *_, position = skip_in_steps(path, 2, path.stat().st_size, valid=True, after=told)
    assert list(read_jobs(path, path.stat().st_size, start=position)) == everything[2:]


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
