"""`Transport.request` on both transports over loopback: any method, no body, and a response body
streamed to a file past the per-response cap; errors as `post` reports them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from batchrun.errors import ConnectionRefused, InvalidResponse, TransportError
from batchrun.transport import AiohttpTransport, HttpxTransport, Timeouts, Transport

from ..rawserver import RawServer, Seen, http

CAP = 1000
TIMEOUTS = Timeouts(connect=5, total=30)
GUARD = 30  # fails only a test whose request would otherwise never end

TRANSPORTS: dict[str, Callable[[], AiohttpTransport | HttpxTransport]] = {
    "aiohttp": lambda: AiohttpTransport(max_connections=4, max_response_bytes=CAP),
    "httpx": lambda: HttpxTransport(httpx.AsyncHTTPTransport(), max_response_bytes=CAP),
}


@pytest.fixture(params=TRANSPORTS)
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[AiohttpTransport | HttpxTransport]:
    made = TRANSPORTS[request.param]()
    yield made
    await made.aclose()


def answering(body: bytes) -> Callable[[Seen, asyncio.StreamWriter], object]:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(http(200, body))
        return True

    return handler


async def test_a_get_sends_no_body_and_reads_the_json_reply(transport: Transport) -> None:
    with RawServer(answering(b'{"id": "batch_1", "status": "in_progress"}')) as server:
        reply = await transport.request("GET", f"{server.base_url}/batches/batch_1", {"x-probe": "1"}, None, TIMEOUTS)
        [seen] = server.seen
    assert (seen.method, seen.path, seen.headers["x-probe"], seen.body) == ("GET", "/v1/batches/batch_1", "1", b"")
    assert "transfer-encoding" not in seen.headers and "content-length" not in seen.headers
    assert reply.status == 200 and orjson.loads(reply.content) == {"id": "batch_1", "status": "in_progress"}
    assert reply.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("method", ["DELETE", "PUT"])
async def test_the_method_given_reaches_the_server_with_the_body(transport: Transport, method: str) -> None:
    with RawServer(answering(b"{}")) as server:
        reply = await transport.request(method, f"{server.base_url}/files/file-1", {}, b"payload", TIMEOUTS)
        [seen] = server.seen
    assert (seen.method, seen.body, reply.status) == (method, b"payload", 200)


async def test_into_receives_a_body_past_the_cap_byte_for_byte(transport: AiohttpTransport | HttpxTransport,
                                                                tmp_path: Path) -> None:
    body = bytes(range(256)) * 1200  # 300 KiB: many chunks, far over the cap
    with RawServer(answering(body)) as server, (tmp_path / "out").open("wb") as into:
        reply = await transport.request("GET", f"{server.base_url}/files/file-1/content", {}, None, TIMEOUTS, into=into)
    assert (tmp_path / "out").read_bytes() == body
    assert reply.status == 200 and reply.content == b""
    assert transport.bodies.peak == 0  # held by nobody: the shared budget never counted it


async def test_without_into_a_body_past_the_cap_fails_as_post_does(transport: Transport) -> None:
    with RawServer(answering(b"x" * (CAP + 1))) as server:
        url = f"{server.base_url}/files/file-1/content"
        with pytest.raises(InvalidResponse) as by_request:
            await transport.request("GET", url, {}, None, TIMEOUTS)
        with pytest.raises(InvalidResponse) as by_post:
            await transport.post(url, {}, b"{}", TIMEOUTS)
    assert by_request.value.code == by_post.value.code == "response_too_large"
    assert str(by_request.value) == str(by_post.value)


async def _stall_mid_body(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(http(200, b"", {"content-length": "100000"}, length=False) + b"x" * 10)
    return True  # the server goes on to wait for another request: the body never ends


async def test_a_server_stalling_mid_body_under_into_ends_at_the_deadline(transport: Transport, tmp_path: Path) -> None:
    with (RawServer(_stall_mid_body) as server, (tmp_path / "out").open("wb") as into,
          anyio.fail_after(GUARD), pytest.raises(TransportError) as caught):
        await transport.request("GET", f"{server.base_url}/files/f/content", {}, None, Timeouts(5, 0.3), into=into)
    assert (tmp_path / "out").read_bytes() == b"x" * 10  # what had arrived
    assert caught.value.code == "request_timeout"
    assert str(caught.value) == "timed out: the response was not complete within 0.3 s (--timeout)"


async def test_a_refused_connection_is_told_apart(transport: Transport) -> None:
    with socket.socket() as probe:  # a port just freed: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefused) as caught:
        await transport.request("GET", f"http://127.0.0.1:{port}/v1/batches", {}, None, TIMEOUTS)
    assert caught.value.code == "connection_error"
