"""`Client`: one line's attempts, from the first to its result — retried, final or fatal, as
``docs/retries.md`` says — with a fake sleep, never a real one."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from batchrun.client import Client
from batchrun.config import ApiKey, RetryPolicy, RunConfig
from batchrun.errors import FatalEndpointError
from batchrun.records import Job, LineError, Result

from ..helpers import FakeClock

OK_BODY = {"model": "m", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def scripted(*responses: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering with ``responses`` in turn; the last one repeats."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = responses[min(len(seen), len(responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler), seen


def make_client(tmp_path: Path, transport: httpx.AsyncBaseTransport, sleep: FakeClock, **policy: float) -> Client:
    config = RunConfig(tmp_path / "in.jsonl", base_url="http://127.0.0.1:9/v1",
                       api_key=ApiKey("sk-test-SECRET"), retry=RetryPolicy(**policy))  # type: ignore[arg-type]
    return Client(config, transport=transport, clock=sleep)


JOB = Job(0, 1, "req-0", "/v1/chat/completions", b'{"model": "m"}', "m")


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried(tmp_path: Path, status: int) -> None:
    transport, seen = scripted(httpx.Response(status, json={"error": {"message": "later"}}),
                               httpx.Response(200, json=OK_BODY))
    sleep = FakeClock()
    async with make_client(tmp_path, transport, sleep) as client:
        result = await client.send(JOB)
    assert result.ok and result.attempts == 2 and len(seen) == 2 and len(sleep.waits) == 1


@pytest.mark.parametrize("status", [400, 404, 405, 413, 422, 501])
async def test_final_statuses_are_sent_once_and_recorded(tmp_path: Path, status: int) -> None:
    body = {"error": {"message": "bad thing", "type": "invalid_request_error", "code": "bad_param"}}
    transport, seen = scripted(httpx.Response(status, json=body, headers={"x-request-id": "req_1"}))
    sleep = FakeClock()
    async with make_client(tmp_path, transport, sleep) as client:
        result = await client.send(JOB)
    assert len(seen) == 1 and sleep.waits == [] and result.attempts == 1
    assert (result.status_code, result.request_id, result.body) == (status, "req_1", body)
    assert result.error == {"code": "bad_param", "message": "bad thing"}


async def test_retry_after_header_drives_the_wait(tmp_path: Path) -> None:
    transport, _ = scripted(httpx.Response(429, headers={"retry-after-ms": "1200"}),
                            httpx.Response(429, headers={"retry-after": "3"}),
                            httpx.Response(200, json=OK_BODY))
    sleep = FakeClock()
    async with make_client(tmp_path, transport, sleep) as client:
        result = await client.send(JOB)
    assert result.ok and result.attempts == 3
    assert 1.2 <= sleep.waits[0] <= 1.32 and 3.0 <= sleep.waits[1] <= 3.3


async def test_exhausted_attempts_record_the_last_failure(tmp_path: Path) -> None:
    transport, seen = scripted(httpx.Response(503, json={"error": {"message": "overloaded", "type": "server_error"}}))
    sleep = FakeClock()
    async with make_client(tmp_path, transport, sleep, max_attempts=4) as client:
        result = await client.send(JOB)
    assert len(seen) == 4 and result.attempts == 4 and len(sleep.waits) == 3
    assert result.status_code == 503 and result.error == {"code": "server_error", "message": "overloaded"}


async def test_a_lines_retries_are_accounted_for_one_by_one(tmp_path: Path) -> None:
    transport, seen = scripted(httpx.Response(429, headers={"retry-after-ms": "500"}),
                               httpx.RemoteProtocolError("dropped"),
                               httpx.Response(503, json={"error": {"message": "busy"}}),
                               httpx.Response(200, json=OK_BODY))
    sleep = FakeClock()
    told: list[tuple[str, float]] = []
    config = RunConfig(tmp_path / "in.jsonl", base_url="http://127.0.0.1:9/v1")
    async with Client(config, transport=transport, clock=sleep,
                      on_retry=lambda job, error, wait: told.append((error.code, wait))) as client:
        result = await client.send(JOB)
    assert result.ok and result.attempts == len(seen) == 4
    assert [code for code, _ in told] == ["http_429", "connection_error", "http_503"]
    assert [wait for _, wait in told] == sleep.waits and 0.5 <= sleep.waits[0] <= 0.55
    assert (result.rate_limited, result.unanswered) == (1, 1)  # the 429, and the answer lost
    assert result.waited_ms == round(sum(sleep.waits) * 1000, 1)


async def test_a_line_records_when_its_answering_attempt_was_sent_and_answered(tmp_path: Path) -> None:
    clock = FakeClock()
    on_wire = iter([2.0, 3.0])  # seconds each attempt takes to be answered

    def handler(request: httpx.Request) -> httpx.Response:
        clock.t += next(on_wire)
        return httpx.Response(500 if clock.waits == [] else 200, json=OK_BODY)

    before = time.time()
    async with make_client(tmp_path, httpx.MockTransport(handler), clock) as client:
        result = await client.send(JOB)
    after = time.time()
    assert result.ok and result.attempts == 2
    assert result.started_at is not None and result.finished_at is not None
    # The second attempt's, on the wall clock: sent the first attempt's 2 s and the backoff
    # after the client began.
    assert before - 0.001 <= result.started_at - 2.0 - clock.waits[0] <= after + 0.001
    assert result.finished_at - result.started_at == pytest.approx(3.0, abs=0.002)
    assert result.latency_ms == 3000.0
    assert result.finished_at == round(result.finished_at, 3)
    extra = orjson.loads(result.encode("run"))["batchrun"]
    assert (extra["started_at"], extra["finished_at"]) == (result.started_at, result.finished_at)
    back = Result.from_line(0, result.encode("run"))
    assert (back.started_at, back.finished_at) == (result.started_at, result.finished_at)


def test_a_line_never_sent_records_no_times() -> None:
    bad = Result.from_line_error(LineError(3, 4, "c", "invalid_request_line", "x:4: not JSON"))
    extra = orjson.loads(bad.encode("run"))["batchrun"]
    assert "started_at" not in extra and "finished_at" not in extra


async def test_429s_stop_once_the_wait_they_asked_for_spends_the_patience(tmp_path: Path) -> None:
    transport, seen = scripted(httpx.Response(429, headers={"retry-after": "1"},
                                              json={"error": {"message": "slow down", "code": "rate_limit_exceeded"}}))
    sleep = FakeClock()
    async with make_client(tmp_path, transport, sleep, rate_limit_patience=2.0) as client:
        result = await client.send(JOB)
    # The wait after the second 429 (about 1 s more) would pass 2 s of patience: it is not taken.
    assert len(seen) == 2 and len(sleep.waits) == 1 and result.attempts == 2
    assert result.status_code == 429 and result.error == {"code": "rate_limit_exceeded", "message": "slow down"}
    assert result.rate_limited == 1  # 429s that were retried; the last one is the line's outcome


@pytest.mark.parametrize(("exc", "code"), [
    (httpx.ReadTimeout("slow"), "request_timeout"),
    (httpx.ConnectError("refused"), "connection_error"),
    (httpx.RemoteProtocolError("dropped"), "connection_error"),
])
async def test_transport_failures_retry_then_record_no_response(tmp_path: Path, exc: Exception, code: str) -> None:
    transport, seen = scripted(exc)
    async with make_client(tmp_path, transport, FakeClock(), max_attempts=3) as client:
        result = await client.send(JOB)
    assert len(seen) == 3 and result.status_code is None and result.body is None
    assert result.error is not None and result.error["code"] == code


async def test_non_json_success_is_retried_as_malformed(tmp_path: Path) -> None:
    transport, seen = scripted(httpx.Response(200, content=b"<html>gateway</html>"), httpx.Response(200, json=OK_BODY))
    async with make_client(tmp_path, transport, FakeClock()) as client:
        result = await client.send(JOB)
    assert result.ok and len(seen) == 2
    transport, _ = scripted(httpx.Response(200, content=b"{truncated"))
    async with make_client(tmp_path, transport, FakeClock(), max_attempts=2) as client:
        result = await client.send(JOB)
    assert result.error is not None and result.error["code"] == "malformed_response" and result.status_code == 200


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failure_is_fatal_and_not_retried(tmp_path: Path, status: int) -> None:
    transport, seen = scripted(httpx.Response(status, json={"error": {"message": "Incorrect API key provided: sk-test-SECRET"}}))
    async with make_client(tmp_path, transport, FakeClock()) as client:
        with pytest.raises(FatalEndpointError) as info:
            await client.send(JOB)
    assert len(seen) == 1
    assert "SECRET" not in str(info.value) and "***" in str(info.value)


async def test_request_carries_key_and_body_and_joined_url(tmp_path: Path) -> None:
    transport, seen = scripted(httpx.Response(200, json=OK_BODY))
    async with make_client(tmp_path, transport, FakeClock()) as client:
        await client.send(JOB)
    (request,) = seen
    assert str(request.url) == "http://127.0.0.1:9/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-SECRET"
    assert request.content == JOB.body


async def test_error_messages_never_contain_the_key(tmp_path: Path) -> None:
    transport, _ = scripted(httpx.Response(400, text="you sent Bearer sk-test-SECRET"))
    async with make_client(tmp_path, transport, FakeClock()) as client:
        result = await client.send(JOB)
    assert result.error is not None and "SECRET" not in result.error["message"]
    transport, _ = scripted(httpx.ConnectError("cannot reach sk-test-SECRET"))
    async with make_client(tmp_path, transport, FakeClock(), max_attempts=1) as client:
        result = await client.send(JOB)
    assert result.error is not None and "SECRET" not in result.error["message"]


def test_api_key_hides_itself() -> None:
    key = ApiKey("sk-test-SECRET")
    config = RunConfig(Path("in.jsonl"), base_url="https://example.invalid/v1", api_key=key)
    assert "SECRET" not in repr(config) and "SECRET" not in str(key) and "SECRET" not in f"{key}"


async def test_a_lines_429s_and_other_failures_back_off_on_separate_counts(tmp_path: Path) -> None:
    """Five 429s, then a 500: the 500's backoff is the first cap (1 s), not the sixth (8 s).
    With one count for both kinds, 20 lines would all draw under 1 s of 8 with odds of 8⁻²⁰."""
    for _ in range(20):
        transport, _ = scripted(*[httpx.Response(429)] * 5, httpx.Response(500), httpx.Response(200, json=OK_BODY))
        sleep = FakeClock()
        async with make_client(tmp_path, transport, sleep, backoff_base=1.0, backoff_max=8.0) as client:
            result = await client.send(JOB)
        assert result.ok and result.attempts == 7 and result.rate_limited == 5
        assert sleep.waits[5] <= 1.0
