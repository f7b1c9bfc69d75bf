"""`batchapi.api.BatchApi`: the Batch API's calls retried by tenacity as `retry.next_wait` says,
classified by `retry.status_error` as online lines are, on a fake clock (no real sleep); and
the upload's multipart body as the simulator's parser reads it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchrun.batchapi.api import BatchApi, multipart
from batchrun.config import ApiKey, RetryPolicy, RunConfig
from batchrun.errors import FatalEndpointError
from batchrun.simulator.batches import _multipart
from batchrun.transport import HttpxTransport

from ...helpers import FakeClock

KEY = "sk-api-0123456789abcdefSECRET"
BATCH = {"id": "batch_1", "object": "batch", "status": "validating"}


def api(tmp_path: Path, handler: Callable[[httpx.Request], httpx.Response], clock: FakeClock,
        **policy: Any) -> BatchApi:
    config = RunConfig(tmp_path / "in.jsonl", base_url="http://127.0.0.1:9/v1", api_key=ApiKey(KEY),
                       retry=RetryPolicy(**policy))
    return BatchApi(config, HttpxTransport(httpx.MockTransport(handler)), clock)


def scripted(*responses: httpx.Response) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses[min(len(seen), len(responses)) - 1]

    return handler, seen


async def test_a_call_is_retried_with_the_wait_the_server_asks_for(tmp_path: Path) -> None:
    handler, seen = scripted(httpx.Response(429, headers={"retry-after": "7"}), httpx.Response(503),
                             httpx.Response(200, json=BATCH))
    clock = FakeClock()
    assert await api(tmp_path, handler, clock).retrieve("batch_1") == BATCH
    assert len(seen) == 3 and len(clock.waits) == 2 and 7.0 <= clock.waits[0] <= 7.7
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


async def test_a_call_stops_for_good_at_max_attempts_with_the_key_scrubbed(tmp_path: Path) -> None:
    handler, seen = scripted(httpx.Response(500, json={"error": {"message": f"down, you sent {KEY}"}}))
    clock = FakeClock()
    with pytest.raises(FatalEndpointError) as info:
        await api(tmp_path, handler, clock, max_attempts=4).retrieve("batch_1")
    assert len(seen) == 4 and len(clock.waits) == 3
    assert str(info.value) == "GET /v1/batches/batch_1 failed, retries spent: down, you sent ***"


async def test_429s_and_other_failures_back_off_on_separate_counts(tmp_path: Path) -> None:
    for _ in range(20):  # with one count, the 500's wait would be drawn below 8 s, not 1 s
        handler, _ = scripted(*[httpx.Response(429)] * 5, httpx.Response(500), httpx.Response(200, json=BATCH))
        clock = FakeClock()
        await api(tmp_path, handler, clock, backoff_base=1.0, backoff_max=8.0).retrieve("batch_1")
        assert len(clock.waits) == 6 and clock.waits[5] <= 1.0


@pytest.mark.parametrize(("response", "message"), [
    (httpx.Response(429, json={"error": {"code": "insufficient_quota", "message": "no"}}), "out of quota"),
    (httpx.Response(401, headers={"x-should-retry": "true"}), "rejected the credentials (HTTP 401) for GET"),
    (httpx.Response(400, json={"error": {"code": "bad", "message": "bad id"}}),
     "refused GET /v1/batches/batch_1 (HTTP 400, bad): bad id"),
    (httpx.Response(503, headers={"x-should-retry": "false"}), "(HTTP 503, http_503)"),
    (httpx.Response(307, headers={"location": "https://other.example/"}), "redirected to https://other.example/"),
])
async def test_statuses_that_no_attempt_changes_stop_at_once(tmp_path: Path, response: httpx.Response,
                                                               message: str) -> None:
    handler, seen = scripted(response)
    clock = FakeClock()
    with pytest.raises(FatalEndpointError) as info:
        await api(tmp_path, handler, clock).retrieve("batch_1")
    assert len(seen) == 1 and clock.waits == [] and message in str(info.value)


async def test_a_create_whose_reply_was_lost_finds_its_batch_before_creating_another(tmp_path: Path) -> None:
    metadata = {"batchrun_run": "r1", "batchrun_part": "0"}
    found = {**BATCH, "metadata": metadata, "created_at": 2000}
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            raise httpx.RemoteProtocolError("the reply was lost")
        return httpx.Response(200, json={"object": "list", "data": [found], "has_more": False})

    clock = FakeClock()
    assert await api(tmp_path, handler, clock).create_batch("file-1", "/v1/chat/completions", metadata, 1000.0) == found
    assert seen == ["POST /v1/batches", "GET /v1/batches"] and len(clock.waits) == 1


def test_the_upload_body_is_multipart_as_a_server_parses_it() -> None:
    content = b'{"custom_id": "0"}\r\n--not-a-boundary\r\n{"custom_id": "1"}\n'
    body, content_type = multipart("part-0000.jsonl", content)
    assert content_type.startswith("multipart/form-data; boundary=")
    assert body.startswith(b"--" + content_type.partition("boundary=")[2].encode() + b"\r\n")
    assert _multipart(body) == {"purpose": (None, b"batch"), "file": ("part-0000.jsonl", content)}
