"""`batchapi.answers.order`: a batch's downloaded files into one line per request, in input
order — credentials scrubbed, answers over the cap ``response_too_large`` — and `Answers` reading
them back as the engine asks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson

from batchrun.batchapi.answers import error_file, order, ordered_file, output_file
from batchrun.batchapi.api import BatchApi
from batchrun.batchapi.ledger import Part
from batchrun.batchapi.plan import part_file
from batchrun.config import RunConfig
from batchrun.scrub import Scrubber
from batchrun.transport import HttpxTransport

from ...helpers import FakeClock

KEY = "sk-unit-0123456789abcdefSECRET"


def part(tmp_path: Path, n: int, status: str = "completed") -> Part:
    part_file(tmp_path, 0).write_bytes(b"".join(b'{"custom_id": "%d", "method": "POST"}\n' % i for i in range(n)))
    return Part(number=0, url="/v1/chat/completions", model=None, first_line=0, batch_id="batch_1", status=status)


def record(index: int, body: Any, status: int = 200) -> dict[str, Any]:
    return {"id": f"batch_req_{index}", "custom_id": str(index),
            "response": {"status_code": status, "request_id": f"req_{index}", "body": body}, "error": None}


def write(path: Path, records: list[dict[str, Any]], tail: bytes = b"") -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records) + tail)


def ordered(tmp_path: Path, p: Part) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in ordered_file(tmp_path, p).read_bytes().splitlines()]


def test_lines_come_in_input_order_with_the_output_files_answer_first_and_the_unanswered_said(tmp_path: Path) -> None:
    p = part(tmp_path, 4)
    write(output_file(tmp_path, p), [record(2, {"choices": [2]}), record(0, {"choices": [0]})], tail=b'{"custom_id": "0"}')
    write(error_file(tmp_path, p), [{"custom_id": "0", "response": None, "error": {"code": "x", "message": "late"}},
                                    {"custom_id": "3", "response": None, "error": {"code": "batch_expired", "message": "m"}}])
    order(tmp_path, p, Scrubber([KEY]))
    lines = ordered(tmp_path, p)
    assert [line["custom_id"] for line in lines] == ["0", "1", "2", "3"]
    assert lines[0]["response"]["body"] == {"choices": [0]} and lines[2]["response"]["body"] == {"choices": [2]}
    assert lines[1]["error"]["code"] == "batch_result_missing" and lines[3]["error"]["code"] == "batch_expired"


def test_the_key_a_provider_quotes_back_in_any_spelling_is_masked(tmp_path: Path) -> None:
    p = part(tmp_path, 3)
    escaped = "".join(f"\\u{ord(c):04x}" for c in KEY)  # as a JSON encoder that escapes everything writes it
    write(output_file(tmp_path, p), [record(0, {"choices": [], "echo": f"Bearer {KEY}", KEY: 1})])
    with open(output_file(tmp_path, p), "ab") as f:
        f.write(b'{"custom_id": "1", "response": {"status_code": 400, "request_id": "%s", "body": {"e": "%s"}}}\n'
                % (KEY[:14].encode(), escaped.encode()))
    write(error_file(tmp_path, p), [{"custom_id": "2", "response": None,
                                     "error": {"code": "batch_failed", "message": f"sent with {KEY[3:20]}"}}])
    order(tmp_path, p, Scrubber([KEY]))
    content = ordered_file(tmp_path, p).read_bytes()
    assert KEY[:12].encode() not in content and b"0123456789ab" not in content
    first, second, third = ordered(tmp_path, p)
    assert first["response"]["body"] == {"choices": [], "echo": "Bearer ***", "***": 1}
    assert second["response"]["request_id"] == "***" and second["response"]["body"] == {"e": "***"}
    assert third["error"]["message"] == "sent with ***"


def test_an_answer_untouched_by_the_scrubber_is_copied_byte_for_byte(tmp_path: Path) -> None:
    p = part(tmp_path, 1)
    raw = b'{"custom_id":"0","response":{"status_code":200,"body":{"choices":[],"n":1.50}},"error":null}'
    output_file(tmp_path, p).write_bytes(raw)  # no newline at the end of the file
    order(tmp_path, p, Scrubber([KEY]))
    assert ordered_file(tmp_path, p).read_bytes() == raw + b"\n"


def test_an_answer_over_the_cap_is_response_too_large_with_its_status(tmp_path: Path) -> None:
    p = part(tmp_path, 3)
    write(output_file(tmp_path, p), [record(1, {"choices": ["x" * 5000]}), record(0, {"choices": []}),
                                     record(2, {"error": {"message": "y" * 5000}}, status=500)])
    order(tmp_path, p, Scrubber([]), cap=1000)
    first, second, third = ordered(tmp_path, p)
    assert first["error"] is None
    assert second["error"]["code"] == "response_too_large" and second["response"] == {"status_code": 200}
    assert second["error"]["message"].startswith("HTTP 200 with a body too large to keep (5,1")
    assert "over 1,000)" in second["error"]["message"]
    assert third["error"]["code"] == "response_too_large" and third["response"] == {"status_code": 500}


def test_the_batch_apis_scrubber_holds_every_credential_the_run_sends(tmp_path: Path) -> None:
    """The scrubber `order` is given (`BatchApi.scrubber`): the --header values, and the password
    of a --base-url's user:password@, as online."""
    password, token = "hunter2-CANARY-9f8e7d6c", "gateway-token-9876543210"
    config = RunConfig(tmp_path / "in.jsonl", base_url=f"http://alice:{password}@127.0.0.1:9/v1",
                       headers=(f"X-Gateway-Token: {token}",))
    scrubber = BatchApi(config, HttpxTransport(httpx.MockTransport(lambda request: httpx.Response(500))),
                        FakeClock()).scrubber
    p = part(tmp_path, 1)
    write(output_file(tmp_path, p), [record(0, {"choices": [], "echo": f"{password} {token}"})])
    order(tmp_path, p, scrubber)
    assert ordered(tmp_path, p)[0]["response"]["body"]["echo"] == "*** ***"
