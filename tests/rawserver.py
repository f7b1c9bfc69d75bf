"""`RawServer`: a tiny HTTP/1.1 server on loopback whose handlers write raw bytes, for the
faults the simulator cannot make (scripted statuses per attempt, redirects, gzip, huge or invalid
UTF-8 bodies, wrong-shaped answers, TLS, connections cut at chosen points), and the helpers that
build its answers; `run` sends a few lines to one (its hang guard only fails a run that would
otherwise never end)."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson

from batchrun import RetryPolicy, RunConfig, run_batch
from batchrun.pacing import SYSTEM_CLOCK

from .helpers import chat_line, read_jsonl, write_jsonl

FAST = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.005)


@dataclass
class Seen:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        """The first message's content: which line of the input this request is."""
        body = orjson.loads(self.body)
        return str(body["messages"][0]["content"]) if "messages" in body else str(body.get("input"))


Handler = Callable[[Seen, asyncio.StreamWriter], Awaitable[bool]]
"""Answers one request by writing to the connection; returns whether to keep it open."""


class LoopServer:
    """A TCP server on loopback, on a thread and event loop of its own, serving each connection
    with `_serve` as a task that stopping cancels.

    :param ssl_context: serve TLS with it.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = 0
        self._ssl = ssl_context
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> Any:  # the subclass's instance
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._track, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _track(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class RawServer(LoopServer):
    """An HTTP/1.1 server on loopback, on a thread and event loop of its own.

    :param handler: called for each request; it writes whatever bytes it likes.
    :param ssl_context: serve TLS with it.
    :param read_body: ``False``: the handler is called before the request's body is read, and
        nothing reads it (a server that never takes the upload).
    """

    def __init__(self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None,
                 read_body: bool = True) -> None:
        super().__init__(ssl_context=ssl_context)
        self.handler = handler
        self.read_body = read_body
        self.seen: list[Seen] = []
        self.connections = 0

    @property
    def base_url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}/v1"

    def count(self, text: str) -> int:
        return sum(1 for s in self.seen if s.text == text)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.transport.abort()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0"))) if self.read_body else b""
        seen = Seen(method, path, headers, body)
        self.seen.append(seen)
        keep = await self.handler(seen, writer)
        await writer.drain()
        return keep


def http(status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, length: bool = True) -> bytes:
    """The bytes of one response; ``length=False`` leaves Content-Length out (then close ends the body)."""
    head = [f"HTTP/1.1 {status} Whatever"]
    fields = {"content-type": "application/json", **(headers or {})}
    if length:
        fields["content-length"] = str(len(body))
    head += [f"{name}: {value}" for name, value in fields.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def chat_answer(seen: Seen) -> dict[str, Any]:
    text = seen.text
    return {"id": "chatcmpl-raw", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text.upper()},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def ok(seen: Seen) -> bytes:
    """A 200 with `chat_answer`."""
    return http(200, orjson.dumps(chat_answer(seen)), {"x-request-id": "req_raw"})


def replying(fn: Callable[[Seen, int], bytes]) -> Handler:
    """A handler from a function of (request, how many times this line was seen before)."""
    attempts: Counter[str] = Counter()

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        n = attempts[seen.text]
        attempts[seen.text] += 1
        writer.write(fn(seen, n))
        return True

    return handler


def error_body(message: str, code: str | None = None, kind: str = "invalid_request_error") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


async def run(tmp_path: Path, base_url: str, n: int = 4, **kw: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``n`` chat lines against ``base_url``; the stats and the output (if it was published)."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(n)])
    kw.setdefault("retry", FAST)
    kw.setdefault("outage_threshold", 0)
    clock = kw.pop("clock", SYSTEM_CLOCK)
    config = RunConfig(source, base_url=base_url, concurrency=kw.pop("concurrency", 4), **kw)
    with anyio.fail_after(30):
        stats = await run_batch(config, clock=clock)
    out = config.out
    return stats, read_jsonl(out) if out.exists() else []


def question(i: int) -> str:
    return f"question {i}"
