"""`batchrun.label.previous`: the answers of a finished label run, kept by request (and id), the
check that the requests are unchanged, and setting the earlier run aside (whole runs:
tests/scenarios/test_label_incremental.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from batchrun.label import previous
from batchrun.label.workspace import Workspace
from batchrun.records import Job, LineError


def request(custom_id: str, text: str) -> bytes:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body},
                        option=orjson.OPT_APPEND_NEWLINE)


def result(custom_id: str, answer: str | None) -> bytes:
    record: dict[str, Any] = {"id": "r", "custom_id": custom_id, "response": None, "error": {"code": "x", "message": "y"}}
    if answer is not None:
        record = {"id": "r", "custom_id": custom_id, "error": None,
                  "response": {"status_code": 200, "request_id": "q", "body": {"answer": answer}}}
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def job(index: int, custom_id: str, text: str) -> Job:
    line = orjson.loads(request(custom_id, text))
    return Job(index, index + 2, custom_id, line["url"], orjson.dumps(line["body"]), "gpt-4o-mini")


def earlier(tmp_path: Path) -> Workspace:
    """A work folder whose finished run answered a and c, and failed b."""
    work = Workspace(tmp_path / "out.csv")
    work.dir.mkdir()
    work.requests.write_bytes(request("line-2", "a") + request("line-3", "b") + request("line-4", "c"))
    work.results.write_bytes(result("line-2", "A") + result("line-3", None) + result("line-4", "C"))
    previous.set_aside(work)
    return work


def test_set_aside_moves_results_then_requests_and_can_be_repeated(tmp_path: Path) -> None:
    work = earlier(tmp_path)
    assert not work.results.exists() and not work.requests.exists()
    assert work.previous_requests.exists() and work.previous_results.exists()
    work.requests.write_bytes(request("line-2", "new"))  # rendered anew after a crash: not the earlier ones
    previous.set_aside(work)
    assert work.requests.exists() and b"line-4" in work.previous_requests.read_bytes()
    previous.discard(work)
    assert not work.previous_requests.exists() and not work.previous_results.exists()


def test_without_ids_a_row_keeps_its_answer_by_its_request_under_its_new_id(tmp_path: Path) -> None:
    kept = previous.Previous(earlier(tmp_path), by_id=False)
    try:
        moved = kept.take(job(5, "line-9", "c"))
        assert moved is not None and moved.index == 5 and moved.custom_id == "line-9" and moved.body == {"answer": "C"}
        assert moved.line is not None and orjson.loads(moved.line)["custom_id"] == "line-9"
        assert kept.take(job(0, "line-2", "changed")) is None  # a changed request is sent
        assert kept.take(job(1, "line-3", "b")) is None  # a failed answer is not kept
        assert kept.take(LineError(2, 4, "line-4", "bad", "x")) is None
    finally:
        kept.close()


def test_with_ids_a_row_keeps_its_answer_only_under_the_same_id(tmp_path: Path) -> None:
    kept = previous.Previous(earlier(tmp_path), by_id=True)
    try:
        assert kept.take(job(0, "line-9", "a")) is None
        same = kept.take(job(0, "line-2", "a"))
        assert same is not None and same.body == {"answer": "A"}
    finally:
        kept.close()


def test_unchanged_compares_the_requests_as_rendered_now(tmp_path: Path) -> None:
    work = Workspace(tmp_path / "out.csv")
    work.dir.mkdir()
    assert not previous.unchanged(work, [request("line-2", "a")])  # no earlier requests
    work.requests.write_bytes(request("line-2", "a") + request("line-3", "b"))
    assert previous.unchanged(work, [request("line-2", "a"), request("line-3", "b")])
    assert not previous.unchanged(work, [request("line-2", "a")])
    assert not previous.unchanged(work, [request("line-2", "a"), request("line-3", "B")])
