"""Servers that keep an attempt alive a few bytes at a time: `--timeout` bounds the whole
attempt, connecting to the response's last byte, on either transport.

Each server sends something more often than the deadline (every 0.1 s against --timeout 0.5),
so an idle timeout would never fire; the outcome is asserted, and the hang guard (`GUARD`) is
there only to fail a test whose attempt never ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from batchrun import RetryPolicy, RunConfig, run_batch
from batchrun.bodies import BodyBudget
from batchrun.transport import AiohttpTransport, HttpxTransport, Transport

from ..helpers import chat_line, read_jsonl, write_jsonl
from ..rawserver import RawServer, Seen, http

DEADLINE = 0.5
DRIP = 0.1  # seconds between the bytes a server sends: well inside the deadline
GUARD = 30
ONCE = RetryPolicy(max_attempts=1)


async def _drip_body(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(http(200, b"", {"content-length": "1000"}, length=False))
    for _ in range(1000):
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(DRIP)
    return False


async def _drip_head(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nx-pad: ")
    while True:
        writer.write(b"a")
        await writer.drain()
        await asyncio.sleep(DRIP)


async def _endless_chunks(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(http(200, b"", {"transfer-encoding": "chunked"}, length=False))
    while True:
        writer.write(b"1\r\n \r\n")
        await writer.drain()
        await asyncio.sleep(DRIP)


async def _continue_forever(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    while True:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(DRIP)


async def _never_read(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    await asyncio.sleep(3600)  # the request's body stays unread: the upload stalls
    return False


TRANSPORTS: dict[str, Callable[[], Transport | httpx.AsyncBaseTransport | None]] = {
    "aiohttp": lambda: None,
    "httpx": httpx.AsyncHTTPTransport,
}


async def _attempt_once(tmp_path: Path, server: RawServer, row: dict[str, Any],
                        transport: Transport | httpx.AsyncBaseTransport | None, **kw: Any) -> tuple[Any, dict[str, Any]]:
    """Send one line once against ``server``; the stats and its output record."""
    source = write_jsonl(tmp_path / "in.jsonl", [row])
    kw.setdefault("retry", ONCE)
    kw.setdefault("outage_threshold", 0)
    config = RunConfig(source, base_url=server.base_url, concurrency=1, **kw)
    with anyio.fail_after(GUARD):
        stats = await run_batch(config, transport=transport)
    [record] = read_jsonl(config.out)
    return stats, record


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "handler",
    [_drip_body, _drip_head, _endless_chunks, _continue_forever,
     # aiohttp warns on a bytes body over 1 MiB (a warning Python shows only under -W, as here);
     # lines up to the 32 MiB limit go as bytes.
     pytest.param(_never_read, marks=pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning"))],
    ids=["drip-body", "drip-head", "endless-chunks", "100-continue", "never-read-10MiB"],
)
async def test_a_server_dripping_bytes_cannot_stretch_an_attempt(tmp_path: Path, transport: str,
                                                                 handler: Callable[..., Any]) -> None:
    reads = handler is not _never_read
    row = chat_line(0) if reads else chat_line(0, pad="x" * 10 * 2**20)  # more than the socket buffers take
    with RawServer(handler, read_body=reads) as server:
        stats, record = await _attempt_once(tmp_path, server, row, TRANSPORTS[transport](), timeout=DEADLINE)
        assert len(server.seen) == 1
    assert stats.exit_code == 1 and dict(stats.failures_by_code) == {"request_timeout": 1}
    assert record["response"] is None and record["error"] == {
        "code": "request_timeout", "message": f"timed out: the response was not complete within {DEADLINE:g} s (--timeout)"}


async def test_timeouts_in_a_row_open_the_breaker_and_max_outage_stops_the_run(tmp_path: Path) -> None:
    """Every attempt ends at the deadline, so the breaker sees the failures and gives up in time."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(40)])
    with RawServer(_drip_body) as server:
        config = RunConfig(source, base_url=server.base_url, concurrency=4, timeout=0.3, outage_threshold=4,
                           max_outage=0.5, retry=RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.005))
        with anyio.fail_after(GUARD):
            stats = await run_batch(config)
        sent = len(server.seen)
    assert stats.exit_code == 4 and "the endpoint has been unavailable" in (stats.stop_reason or "")
    assert sent < 40 * 3  # dispatch paused: most lines were never sent, and the next start sends them
    assert (tmp_path / "in.results.jsonl.checkpoint").is_dir()


async def _fast_endless_chunks(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(http(200, b"", {"transfer-encoding": "chunked"}, length=False) + b'18\r\n{"choices": [], "pad": "\r\n')
    chunk = b"1000\r\n" + b"x" * 0x1000 + b"\r\n"
    with contextlib.suppress(ConnectionError):
        while True:
            writer.write(chunk)
            await writer.drain()
    return False


@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
async def test_an_endless_chunked_body_is_cut_at_the_size_cap(tmp_path: Path, kind: str) -> None:
    """Far inside a long deadline, the cap ends a body with no length as it streams."""
    cap = 2**16
    transport: Transport = (AiohttpTransport(max_connections=1, max_response_bytes=cap) if kind == "aiohttp"
                            else HttpxTransport(httpx.AsyncHTTPTransport(), max_response_bytes=cap))
    with RawServer(_fast_endless_chunks) as server:
        stats, record = await _attempt_once(tmp_path, server, chat_line(0), transport, timeout=600,
                                            retry=RetryPolicy(max_attempts=3))
        assert len(server.seen) == 1  # not retried: the answer would be as large again
    assert stats.exit_code == 1 and dict(stats.failures_by_code) == {"response_too_large": 1}
    assert record["error"]["code"] == "response_too_large" and f"over {cap:,} bytes" in record["error"]["message"]
    assert record["response"]["status_code"] == 200


@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
async def test_endless_bodies_at_once_stay_within_one_byte_budget(tmp_path: Path, kind: str) -> None:
    """Sixteen bodies streaming at once toward their caps hold no more together than the budget
    plus one cap: all but the largest wait for room (without the budget they held 3 caps here)."""
    cap, bodies = 2**18, BodyBudget(limit=2**18)
    transport: Transport = (AiohttpTransport(max_connections=16, max_response_bytes=cap, bodies=bodies) if kind == "aiohttp"
                            else HttpxTransport(httpx.AsyncHTTPTransport(), max_response_bytes=cap, bodies=bodies))
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(16)])
    with RawServer(_fast_endless_chunks) as server:
        config = RunConfig(source, base_url=server.base_url, concurrency=16, timeout=600, outage_threshold=0)
        with anyio.fail_after(GUARD):
            stats = await run_batch(config, transport=transport)
    assert dict(stats.failures_by_code) == {"response_too_large": 16}
    assert 0 < bodies.peak <= bodies.limit + cap and bodies.used == 0
