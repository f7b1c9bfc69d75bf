"""A hostile endpoint, over real loopback: every fault becomes a precise error record,
retried exactly when docs/retries.md says, and never a crash.

The built-in simulator does hangs, drops, truncations, malformed bodies, 429s and 5xx. What it
cannot do — scripted statuses per attempt, redirects to a second host, gzip, huge or invalid
UTF-8 bodies, wrong-shaped answers, TLS, connections cut at chosen points — `RawServer` does: a
tiny HTTP/1.1 server on its own thread whose handlers write raw bytes (`tests/rawserver.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from batchrun import ApiKey, RetryPolicy, RunConfig, run_batch
from batchrun.simulator import Faults, SimulatorConfig, serve
from batchrun.transport import DEFAULT_MAX_RESPONSE_BYTES

from ..helpers import FakeClock, chat_line, read_jsonl, self_signed_certificate, write_jsonl
from ..rawserver import FAST, Handler, RawServer, Seen, chat_answer, error_body, http, ok, question, replying, run

KEY = "sk-test-CANARY-endpoint-7f3a9c"


# -- statuses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried_until_an_answer(tmp_path: Path, status: int) -> None:
    def script(seen: Seen, n: int) -> bytes:
        return http(status, error_body("try later", kind="server_error")) if n < 2 else ok(seen)

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=5)
        assert [server.count(question(i)) for i in range(5)] == [3] * 5
    assert stats.exit_code == 0 and stats.succeeded == 5 and stats.retries == 10
    assert [o["batchrun"]["attempts"] for o in out] == [3] * 5
    assert [o["response"]["body"]["choices"][0]["message"]["content"] for o in out] == [
        question(i).upper() for i in range(5)]
    assert stats.rate_limited == (10 if status == 429 else 0)


@pytest.mark.parametrize("status", [400, 404, 413, 422, 451])
async def test_other_4xx_are_final_and_sent_once(tmp_path: Path, status: int) -> None:
    def script(seen: Seen, n: int) -> bytes:
        return http(status, error_body(f"nope {seen.text}", code=f"code_{status}"), {"x-request-id": "req_e"})

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=6, retry=RetryPolicy(max_attempts=6))
        assert len(server.seen) == 6
    assert stats.exit_code == 1 and stats.failed == 6 and stats.retries == 0
    for i, o in enumerate(out):
        assert o["response"]["status_code"] == status and o["response"]["request_id"] == "req_e"
        assert o["response"]["body"]["error"]["message"] == f"nope {question(i)}"  # the server's body is kept
        # As in OpenAI's error file: the response stands for itself, error is null; batchrun's
        # reading of it is in its own block.
        assert o["error"] is None
        assert o["batchrun"]["error"] == {"code": f"code_{status}", "message": f"nope {question(i)}"}
        assert o["batchrun"]["attempts"] == 1


@pytest.mark.parametrize("concurrency", [8, 1])  # at 1 the only worker ends while the reader waits on it
@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_credentials_abort_the_run_at_once(tmp_path: Path, status: int, concurrency: int) -> None:
    def script(seen: Seen, n: int) -> bytes:
        return http(status, error_body("Incorrect API key provided", code="invalid_api_key"))

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=300, concurrency=concurrency, api_key=ApiKey(KEY))
        sent = len(server.seen)
    assert stats.exit_code == 4 and f"HTTP {status}" in (stats.stop_reason or "")
    assert sent <= concurrency  # the first answers stop the run: not 300 requests
    assert out == [] and (tmp_path / "in.results.jsonl.checkpoint" / "meta.json").exists()  # resumable


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no Retry-After at all: backoff
        {"retry-after": "0"},
        {"retry-after-ms": "5"},
        {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},  # an HTTP date in the past
        {"retry-after": "soon", "retry-after-ms": "-3"},  # unreadable: ignored
        {"x-ratelimit-limit-requests": "60000", "x-ratelimit-remaining-requests": "0",
         "x-ratelimit-reset-requests": "20ms"},
    ],
    ids=["none", "zero", "ms", "http-date", "garbage", "remaining-0"],
)
async def test_429_storm_with_any_retry_after(tmp_path: Path, headers: dict[str, str]) -> None:
    def script(seen: Seen, n: int) -> bytes:
        return http(429, error_body("slow down", code="rate_limit_exceeded"), headers) if n < 3 else ok(seen)

    clock = FakeClock()  # waits are recorded, not slept
    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=10, clock=clock,
                               retry=RetryPolicy(max_attempts=1, backoff_base=0.001, backoff_max=0.01))
        assert len(server.seen) == 40
    # 429s do not use up --max-attempts (1 here): three per line, and every line succeeds.
    assert stats.exit_code == 0 and stats.rate_limited == 30
    assert [o["batchrun"]["attempts"] for o in out] == [4] * 10
    assert max(clock.waits) < 2.5  # whatever the header said, no wait past what it asked


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    def script(seen: Seen, n: int) -> bytes:
        return http(429, error_body("wait", code="rate_limit_exceeded"), {"retry-after-ms": "400"}) if n == 0 \
            else ok(seen)

    with RawServer(replying(script)) as server:
        stats, _ = await run(tmp_path, server.base_url, n=1)
        first, second = server.seen
    assert stats.exit_code == 0
    assert 0.4 <= second.at - first.at < 0.4 * 1.1 + 0.3  # the wait asked for, plus at most 10% jitter


# -- bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "payload", "missing"),
    [
        ("/v1/chat/completions", {"object": "chat.completion", "id": "x"}, "'choices'"),
        ("/v1/chat/completions", {"choices": "not a list"}, "'choices'"),
        ("/v1/completions", {"object": "text_completion"}, "'choices'"),
        ("/v1/embeddings", {"object": "list", "model": "text-embedding-3-small"}, "'data'"),
        ("/v1/responses", {"object": "response", "status": "completed"}, "'output'"),
        ("/v1/chat/completions", [1, 2, 3], "a JSON list"),
        ("/v1/chat/completions", "a string", "a JSON str"),
        ("/v1/chat/completions", {"error": {"message": "upstream failed", "type": "server_error"}, "choices": []},
         "an 'error' and an empty 'choices' list"),
        ("/v1/chat/completions?api-version=1", {"error": "upstream failed", "choices": []}, "an empty 'choices'"),
        ("/v1/embeddings", {"object": "list", "data": [], "error": {"message": "no"}}, "an empty 'data'"),
        ("/v1/responses", {"object": "response", "status": "failed", "output": [],
                           "error": {"code": "server_error", "message": "no"}}, "an empty 'output'"),
    ],
)
async def test_a_2xx_that_is_not_the_answer_is_kept_not_retried(tmp_path: Path, url: str, payload: object,
                                                                  missing: str) -> None:
    def script(seen: Seen, n: int) -> bytes:
        return http(200, orjson.dumps(payload), {"x-request-id": "req_shape"})

    rows: list[Any] = [{**chat_line(i), "url": url} for i in range(3)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    with RawServer(replying(script)) as server:
        stats = await run_batch(RunConfig(source, base_url=server.base_url, retry=FAST))
        assert len(server.seen) == 3  # the server did the work (and may bill it): never sent again
    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert stats.exit_code == 1 and dict(stats.failures_by_code) == {"invalid_response": 3}
    for o in out:
        assert o["error"]["code"] == "invalid_response" and missing in o["error"]["message"]
        assert o["response"] == {"status_code": 200, "request_id": "req_shape", "body": payload}
        assert o["batchrun"]["attempts"] == 1


async def test_an_envelope_url_that_could_leave_the_base_url_is_an_input_error_never_sent(tmp_path: Path) -> None:
    urls = ["/v1/../../admin/chat/completions", "//evil.example/v1/chat/completions", "/v1/chat completions",
            "http://evil.example/v1/chat/completions", "/v1/%2e%2e/chat/completions", "/v1/chat\\completions",
            "/v1/chat/completions\r\nX-Evil: 1", "/v1/chat/completions#x"]
    rows: list[Any] = [{**chat_line(i), "url": url} for i, url in enumerate(urls)]
    rows.append({**chat_line(len(urls)), "url": "/v1/chat/completions?api-version=1"})
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    with RawServer(replying(lambda seen, n: ok(seen))) as server, anyio.fail_after(30):
        stats = await run_batch(RunConfig(source, base_url=server.base_url, retry=FAST))
        assert [(seen.path, seen.text) for seen in server.seen] == [
            ("/v1/chat/completions?api-version=1", question(len(urls)))]
    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert stats.exit_code == 1 and dict(stats.failures_by_code) == {"invalid_request_line": len(urls)}
    for line_no, (o, url) in enumerate(zip(out, urls, strict=False), start=1):
        assert o["error"]["code"] == "invalid_request_line"
        assert o["error"]["message"].startswith(f"{source}:{line_no}: url ") and repr(url) in o["error"]["message"]
    assert out[-1]["response"]["status_code"] == 200


async def test_a_2xx_with_an_error_beside_its_answer_is_the_answer(tmp_path: Path) -> None:
    def script(seen: Seen, n: int) -> bytes:
        return http(200, orjson.dumps({**chat_answer(seen), "error": {"message": "partly degraded"}}))

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=2)
        assert len(server.seen) == 2
    assert stats.exit_code == 0 and stats.succeeded == 2
    assert [o["response"]["body"]["error"] for o in out] == [{"message": "partly degraded"}] * 2  # kept as it came
    assert out[0]["response"]["body"]["choices"][0]["message"]["content"] == question(0).upper()


async def test_a_2xx_json_null_is_invalid_response_not_malformed(tmp_path: Path) -> None:
    with RawServer(replying(lambda seen, n: http(200, b"null"))) as server:
        _stats, out = await run(tmp_path, server.base_url, n=1)
        assert len(server.seen) == 1
    assert out[0]["error"]["code"] == "invalid_response"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies_are_decoded(tmp_path: Path, encoding: str) -> None:
    def script(seen: Seen, n: int) -> bytes:
        raw = orjson.dumps(chat_answer(seen))
        packed = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
        return http(200, packed, {"content-encoding": encoding})

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=5)
        assert "gzip" in server.seen[0].headers.get("accept-encoding", "")
    assert stats.exit_code == 0
    assert [o["response"]["body"]["choices"][0]["message"]["content"] for o in out] == [
        question(i).upper() for i in range(5)]


def _too_large_announced(seen: Seen, n: int) -> bytes:
    # The head announces more than the cap; the client must refuse before reading it.
    return http(200, b"", {"content-length": str(DEFAULT_MAX_RESPONSE_BYTES + 1)}, length=False) + b'{"a": "'


def _gzip_bomb() -> bytes:
    data = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * 2**20
    parts = [data.compress(b'{"choices": [], "pad": "')]
    parts += [data.compress(chunk) for _ in range(DEFAULT_MAX_RESPONSE_BYTES // 2**20 + 1)]
    parts.append(data.compress(b'"}') + data.flush())
    return b"".join(parts)


async def _too_large_streamed(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    # No Content-Length: the body is read until the cap is passed (the server closes to end it).
    writer.write(http(200, b"", {"connection": "close"}, length=False) + b'{"choices": [], "pad": "')
    chunk = b"x" * 2**20
    with contextlib.suppress(ConnectionError):
        for _ in range(DEFAULT_MAX_RESPONSE_BYTES // 2**20 + 2):
            writer.write(chunk)
            await writer.drain()
    return False


@pytest.mark.parametrize("how", ["announced", "streamed", "gzip-bomb"])
async def test_a_body_over_the_cap_is_response_too_large(tmp_path: Path, how: str) -> None:
    if how == "announced":
        handler = replying(_too_large_announced)
    elif how == "streamed":
        handler = _too_large_streamed
    else:
        bomb = _gzip_bomb()
        assert len(bomb) < 2**20  # under a megabyte on the wire, over 64 MiB decoded
        handler = replying(lambda seen, n: http(200, bomb, {"content-encoding": "gzip"}))
    with RawServer(handler) as server:
        stats, out = await run(tmp_path, server.base_url, n=1)
        assert len(server.seen) == 1  # not retried: the answer would be as large again
    assert stats.exit_code == 1
    assert out[0]["error"]["code"] == "response_too_large"
    assert "too large" in out[0]["error"]["message"] and out[0]["response"]["status_code"] == 200


async def test_invalid_utf8_bodies_become_precise_errors(tmp_path: Path) -> None:
    def script(seen: Seen, n: int) -> bytes:
        if seen.text == question(0):
            return http(200, b'{"choices": [], "note": "\xff\xfe broken"}')
        if seen.text == question(1):
            return http(500, b"<html>\xff\xfe upstream broke</html>", {"content-type": "text/html"})
        return http(400, b'{"error": {"message": "bad \xc3\x28 byte", "code": "bad"}}')

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=3)
        assert [server.count(question(i)) for i in range(3)] == [3, 3, 1]
    assert stats.exit_code == 1 and stats.failed == 3
    malformed, server_error, client_error = out
    assert malformed["error"]["code"] == "malformed_response"
    assert malformed["response"]["status_code"] == 200 and malformed["response"]["body"] is None  # no JSON to keep
    assert malformed["response"]["request_id"].startswith("req_batchrun_")  # the server sent none
    assert "not JSON" in malformed["error"]["message"] and "\ufffd" in malformed["error"]["message"]
    assert server_error["error"] is None and server_error["response"]["status_code"] == 500
    assert server_error["batchrun"]["error"]["code"] == "http_500"
    assert "upstream broke" in server_error["batchrun"]["error"]["message"]
    assert client_error["error"] is None and client_error["response"]["status_code"] == 400
    assert client_error["batchrun"]["error"]["code"] == "http_400"


@pytest.mark.parametrize("header", ["x-request-id", "location"])
async def test_a_header_that_is_not_utf8_is_not_a_crash(tmp_path: Path, header: str) -> None:
    status = 200 if header == "x-request-id" else 302

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        body = orjson.dumps(chat_answer(seen))
        writer.write(http(status, body)[:-len(body) - 2] + f"{header}: req_".encode() + b"\xff\xfe\r\n\r\n" + body)
        return True

    with RawServer(handler) as server:
        stats, out = await run(tmp_path, server.base_url, n=2)
    assert len(out) == 2 and stats.exit_code in (0, 1)


@pytest.mark.parametrize("status", [200, 400])
async def test_a_deeply_nested_body_is_not_a_crash(tmp_path: Path, status: int) -> None:
    def script(seen: Seen, n: int) -> bytes:
        body = orjson.dumps(chat_answer(seen))[:-1] + b', "x": ' + b"[" * 300 + b"]" * 300 + b"}"
        return http(status, body)

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=2)
    assert len(out) == 2 and stats.exit_code in (0, 1)


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_never_followed_and_the_key_never_leaves(tmp_path: Path, status: int) -> None:
    with RawServer(replying(lambda seen, n: ok(seen))) as elsewhere:
        target = f"http://127.0.0.1:{elsewhere.port}/v1/chat/completions"

        def script(seen: Seen, n: int) -> bytes:
            return http(status, b"", {"location": target})

        with RawServer(replying(script)) as server:
            stats, out = await run(tmp_path, server.base_url, n=3, api_key=ApiKey(KEY))
            assert len(server.seen) == 3  # a redirect is final: sent once
            assert {s.headers["authorization"] for s in server.seen} == {f"Bearer {KEY}"}
        assert elsewhere.seen == [] and elsewhere.connections == 0  # the other host never heard of us
    assert stats.exit_code == 1
    for o in out:
        assert o["error"] is None and o["response"]["status_code"] == status
        assert o["batchrun"]["error"]["code"] == f"http_{status}"
        assert target in o["batchrun"]["error"]["message"] and "not followed" in o["batchrun"]["error"]["message"]


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a freshly made self-signed certificate for 127.0.0.1."""
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


async def test_a_certificate_that_fails_verification_aborts_the_run(tmp_path: Path,
                                                                     self_signed: ssl.SSLContext) -> None:
    with RawServer(replying(lambda seen, n: ok(seen)), ssl_context=self_signed) as server:
        stats, out = await run(tmp_path, server.base_url, n=200, concurrency=8, api_key=ApiKey(KEY),
                               outage_threshold=10)
        assert server.seen == []  # no request was ever sent over the unverified connection
        assert server.connections <= 8
    assert stats.exit_code == 4
    assert "TLS certificate verification failed" in (stats.stop_reason or "")
    assert out == [] and (tmp_path / "in.results.jsonl.checkpoint").is_dir()


async def test_https_to_a_plain_http_server_is_a_connection_error(tmp_path: Path) -> None:
    async with serve() as sim:
        stats, out = await run(tmp_path, sim.base_url.replace("http://", "https://"), n=3)
        assert sim.stats.requests == 0
    assert stats.exit_code == 1 and dict(stats.failures_by_code) == {"connection_error": 3}
    for o in out:
        assert o["response"] is None and "SSL" in o["error"]["message"]
        assert o["batchrun"]["attempts"] == FAST.max_attempts  # retried, as any connection failure


# -- connections that misbehave ----------------------------------------------------------------


async def _never_answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    await asyncio.sleep(3600)
    return False


async def _headers_then_hang(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(http(200, b"", {"content-length": "100"}, length=False) + b'{"choi')
    await writer.drain()
    await asyncio.sleep(3600)
    return False


async def _close_at_once(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    return False


async def _reset(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close → RST
    return False


def _cut(data: Callable[[Seen], bytes]) -> Handler:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(data(seen))
        return False

    return handler


def _chunked_cut(seen: Seen) -> bytes:
    return http(200, b"", {"transfer-encoding": "chunked"}, length=False) + b"40\r\n" + b'{"choices": ['


def _no_length_cut(seen: Seen) -> bytes:
    body = orjson.dumps(chat_answer(seen))
    return http(200, b"", {"connection": "close"}, length=False) + body[: len(body) // 2]


@pytest.mark.parametrize(
    ("handler", "code", "words"),
    [
        (_never_answer, "request_timeout", "timed out"),
        (_headers_then_hang, "request_timeout", "timed out"),
        (_close_at_once, "connection_error", "Disconnected"),
        (_reset, "connection_error", ""),
        (_cut(lambda seen: b"HTTP/1.1 200 OK\r\ncontent-type: appl"), "connection_error", ""),
        (_cut(lambda seen: ok(seen)[:-20]), "connection_error", "Payload"),
        (_cut(_chunked_cut), "connection_error", "Payload"),
        (_cut(lambda seen: b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), "connection_error", ""),
        (_cut(_no_length_cut), "malformed_response", "not JSON"),
    ],
    ids=["hang", "headers-then-hang", "close", "reset", "half-head", "short-body", "chunk-cut", "not-http",
         "unframed-cut"],
)
async def test_a_connection_that_misbehaves_is_retried_then_a_precise_error(
        tmp_path: Path, handler: Handler, code: str, words: str) -> None:
    with RawServer(handler) as server:
        stats, out = await run(tmp_path, server.base_url, n=3, timeout=0.3)
        assert len(server.seen) == 3 * FAST.max_attempts
    assert stats.exit_code == 1 and dict(stats.failures_by_code) == {code: 3}
    for o in out:
        assert o["error"]["code"] == code and words in o["error"]["message"] and o["error"]["message"]
        assert o["batchrun"]["attempts"] == FAST.max_attempts


@pytest.mark.parametrize(
    ("faults", "code"),
    [
        (Faults(rate_timeout=1.0, hang_s=2), "request_timeout"),
        (Faults(rate_drop=1.0), "connection_error"),
        (Faults(rate_truncate=1.0), "connection_error"),
        (Faults(rate_malformed=1.0), "malformed_response"),
        (Faults(rate_500=1.0), None),  # 500, 502, 503 or 504: the server's own code
    ],
    ids=["hang", "drop", "truncate", "malformed", "5xx"],
)
async def test_simulator_faults_on_every_attempt(tmp_path: Path, faults: Faults, code: str | None) -> None:
    async with serve(SimulatorConfig(faults=faults)) as sim:
        stats, out = await run(tmp_path, sim.base_url, n=4, timeout=0.3)
        assert sim.stats.requests == 4 * FAST.max_attempts
    assert stats.exit_code == 1 and stats.failed == 4
    for o in out:
        assert o["batchrun"]["attempts"] == FAST.max_attempts
        if code is None:
            assert o["response"]["status_code"] in (500, 502, 503, 504) and o["error"] is None
            assert o["batchrun"]["error"]["code"] == "server_error"
        else:
            assert o["error"]["code"] == code
            assert o["response"] is None if code != "malformed_response" else o["response"]["status_code"] == 200


@pytest.mark.parametrize("retry_after_s", [0.01, None], ids=["retry-after", "no-retry-after"])
async def test_429_and_5xx_storms_are_ridden_out(tmp_path: Path, retry_after_s: float | None) -> None:
    faults = Faults(rate_429=0.4, rate_500=0.3, retry_after_s=retry_after_s)
    async with serve(SimulatorConfig(faults=faults, seed=3)) as sim:
        policy = RetryPolicy(max_attempts=20, backoff_base=0.001, backoff_max=0.01)
        stats, out = await run(tmp_path, sim.base_url, n=150, concurrency=16, retry=policy)
        responses = dict(sim.stats.responses)
    assert stats.exit_code == 0 and stats.succeeded == 150
    assert stats.rate_limited == responses[429] > 0
    assert stats.retries == sum(n for status, n in responses.items() if status != 200)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(150)]
