"""Proxy routing (`AiohttpTransport`): ``HTTP_PROXY``/``HTTPS_PROXY`` send requests through a
forward proxy — absolute-form for ``http://``, a ``CONNECT`` tunnel for ``https://`` — and
``NO_PROXY`` names hosts reached directly, as httpx and curl read them. A real proxy on
loopback forwards what it is sent and records each request line."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchrun import RunConfig, run_batch
from batchrun.simulator import Simulator

from ..helpers import chat_line, read_jsonl, write_jsonl
from ..rawserver import RawServer, ok, replying

# REQUEST_METHOD: a CGI environment, where HTTP_PROXY is a request header and is not read.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


class ForwardProxy:
    """A forward HTTP proxy on loopback, on a thread and event loop of its own: an absolute-form
    request is sent on to its origin (one request a connection), a ``CONNECT`` is tunnelled.
    ``seen`` holds each request line's method and target, in arrival order."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.url = ""

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            self.seen.append(f"{method} {target}")
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                return
            fields = [line for line in lines if line and line.partition(":")[0].strip().lower()
                      not in ("connection", "proxy-connection", "keep-alive")]
            length = next((int(line.partition(":")[2]) for line in fields
                           if line.partition(":")[0].strip().lower() == "content-length"), 0)
            body = await reader.readexactly(length)
            url = urllib.parse.urlsplit(target)
            assert url.hostname is not None and url.port is not None, target  # absolute-form
            up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
            path = url.path + (f"?{url.query}" if url.query else "")
            up_writer.write(f"{method} {path} HTTP/1.1\r\n{''.join(f + chr(13) + chr(10) for f in fields)}"
                            "Connection: close\r\n\r\n".encode("latin-1") + body)
            writer.write(await up_reader.read())  # the whole answer: the origin closes after it
            up_writer.close()
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        sink.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    for name in PROXY_VARIABLES:  # whatever the machine running the tests has set
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with ForwardProxy() as forward:
        yield forward


async def run(tmp_path: Path, base_url: str, n: int = 5) -> list[dict[str, Any]]:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(n)])
    config = RunConfig(source, base_url=base_url, concurrency=2)
    stats = await run_batch(config)
    assert stats.exit_code == 0, stats.stop_reason
    return read_jsonl(config.out)


async def test_http_requests_go_through_HTTP_PROXY_in_absolute_form(
        tmp_path: Path, sim: Simulator, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    out = await run(tmp_path, sim.base_url)
    assert [line["response"]["status_code"] for line in out] == [200] * 5
    assert proxy.seen == [f"POST http://127.0.0.1:{sim.port}/v1/chat/completions"] * 5
    assert sim.stats.requests == 5


async def test_hosts_in_NO_PROXY_are_reached_directly(
        tmp_path: Path, sim: Simulator, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.1")
    await run(tmp_path, sim.base_url)
    assert proxy.seen == [] and sim.stats.requests == 5


async def test_the_proxy_of_the_other_scheme_is_not_used(
        tmp_path: Path, sim: Simulator, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)  # for https:// only: this endpoint is http://
    await run(tmp_path, sim.base_url)
    assert proxy.seen == [] and sim.stats.requests == 5


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A freshly made self-signed certificate for 127.0.0.1, and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl binary is not available to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def test_https_requests_are_tunnelled_through_HTTPS_PROXY(
        tmp_path: Path, proxy: ForwardProxy, certificate: tuple[Path, Path]) -> None:
    """A separate process, which trusts the endpoint's certificate (``SSL_CERT_FILE``, read when
    the TLS context is made): the answers arrive through the tunnel, end to end."""
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    with RawServer(replying(lambda seen, n: ok(seen)), ssl_context=context) as server:
        env = {**os.environ, "HTTPS_PROXY": proxy.url, "SSL_CERT_FILE": str(cert)}
        done = subprocess.run([sys.executable, "-m", "batchrun", "run", str(source), "--base-url", server.base_url,
                               "-c", "2", "-q"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert len(server.seen) == 5
    assert proxy.seen and set(proxy.seen) == {f"CONNECT 127.0.0.1:{server.port}"}  # a tunnel a connection
    assert [line["response"]["status_code"] for line in read_jsonl(tmp_path / "in.results.jsonl")] == [200] * 5
