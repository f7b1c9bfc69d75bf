"""The simulator over real loopback sockets: HTTP behaviour, each fault as a client sees it, runners."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

import batchrun.simulator
from batchrun.simulator import STATS_PATH, Faults, SimulatorConfig, run_in_thread, serve

CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # serve() runs on the asyncio loop it is started in


@asynccontextmanager
async def client(
    base_url: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, headers=headers) as c:
        yield c


@asynccontextmanager
async def raw(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A bare TCP connection, for what HTTP clients won't do: pipelining, Expect, bad syntax."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


def http_request(body: bytes, extra: str = "", send_body: bool = True) -> bytes:
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + (body if send_body else b"")


# Answers over HTTP


@pytest.mark.parametrize(("model", "status"), [
    ("gpt-4o-mini", 200), ("gpt-4o-mini-2024-07-18", 200), ("o4-mini", 200), ("gpt-4o-mni", 404), ("m", 404)])
async def test_openai_like_it_answers_a_model_it_does_not_know_404_model_not_found(model: str, status: int) -> None:
    async with serve(SimulatorConfig(any_model=False, any_root=False)) as sim, client(sim.base_url) as c:
        response = await c.post("/chat/completions", json={**CHAT_BODY, "model": model})
        assert response.status_code == status
        if status == 404:
            assert response.json()["error"]["code"] == "model_not_found" and model in response.json()["error"]["message"]
        embedded = await c.post("/embeddings", json={"model": model, "input": "hi"})
        assert embedded.status_code == status


async def test_openai_like_a_path_outside_v1_is_404() -> None:
    async with serve(SimulatorConfig(any_model=False, any_root=False)) as sim, client(f"http://127.0.0.1:{sim.port}") as c:
        for path in ("/chat/completions", "/embeddings", "/batches", "/models", "/v2/chat/completions"):
            response = await c.post(path, json=CHAT_BODY)
            assert response.status_code == 404 and "Invalid URL" in response.json()["error"]["message"], path
        assert (await c.post("/v1/chat/completions", json=CHAT_BODY)).status_code == 200


async def test_by_default_any_model_and_any_root_are_answered() -> None:
    async with serve() as sim, client(f"http://127.0.0.1:{sim.port}") as c:
        assert (await c.post("/chat/completions", json={**CHAT_BODY, "model": "served-model"})).status_code == 200


async def test_chat_is_deterministic_over_http() -> None:
    async with serve() as sim, client(sim.base_url) as c:
        first = await c.post("/chat/completions", json=CHAT_BODY)
        second = await c.post("/chat/completions", json=CHAT_BODY)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-request-id"].startswith("req_")
    assert first.content == second.content
    assert first.headers["x-request-id"] == second.headers["x-request-id"]
    assert first.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/completions", {"model": "m", "prompt": "hi"}, 200),
        ("POST", "/embeddings", {"model": "m", "input": "hi"}, 200),
        ("POST", "/responses", {"model": "m", "input": "hi"}, 200),
        ("GET", "/models", None, 200),
        ("POST", "/nowhere", {}, 404),
        ("POST", "/chat/completions", {"model": "m"}, 400),
    ],
)
async def test_each_route(method: str, path: str, body: object, status: int) -> None:
    async with serve() as sim, client(sim.base_url) as c:
        response = await c.request(method, path, json=body)
        assert response.status_code == status
        assert "x-request-id" in response.headers
        response.json()
        assert sim.stats.responses == {status: 1}


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async with serve() as sim, client(sim.base_url) as c:
        for i in range(5):
            response = await c.post("/chat/completions", json={**CHAT_BODY, "seed": i})
            assert response.status_code == 200
        assert sim.stats.connections == 1
        assert sim.stats.requests == 5


async def test_chunked_request_body() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        data = orjson.dumps(CHAT_BODY)
        yield data[:10]
        yield data[10:]

    async with serve() as sim, client(sim.base_url) as c:
        chunked = await c.post("/chat/completions", content=chunks())
        plain = await c.post("/chat/completions", content=orjson.dumps(CHAT_BODY))
    assert chunked.status_code == 200
    assert chunked.content == plain.content


async def test_pipelined_requests_are_answered_in_order() -> None:
    bodies = [orjson.dumps({**CHAT_BODY, "seed": i}) for i in range(3)]
    config = SimulatorConfig(latency_ms=5, jitter_ms=20)  # jitter must not reorder responses
    async with serve(config) as sim, raw(sim.port) as (reader, writer):
        writer.write(b"".join(http_request(body) for body in bodies))
        responses = [await read_response(reader) for _ in bodies]
    async with serve() as sim, client(sim.base_url) as c:
        expected = [(await c.post("/chat/completions", content=body)).content for body in bodies]
    assert [body for _, _, body in responses] == expected


async def test_expect_continue_and_connection_close() -> None:
    body = orjson.dumps(CHAT_BODY)
    async with serve() as sim, raw(sim.port) as (reader, writer):
        writer.write(http_request(body, "Expect: 100-continue\r\nConnection: close\r\n", send_body=False))
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        status, headers, _ = await read_response(reader)
        assert (status, headers["connection"]) == (200, "close")
        assert await reader.read() == b""  # the server closed the connection


async def test_garbage_is_a_400_and_closes() -> None:
    async with serve() as sim, raw(sim.port) as (reader, writer):
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status == 400
        assert orjson.loads(body)["error"]["type"] == "invalid_request_error"
        assert await reader.read() == b""


async def test_stats_endpoint_reports_without_counting_itself() -> None:
    async with serve(SimulatorConfig(faults=Faults(rate_500=1.0))) as sim, client(f"http://127.0.0.1:{sim.port}") as c:
        await c.post("/v1/chat/completions", json=CHAT_BODY)
        stats = (await c.get(STATS_PATH)).json()  # never faulted, though every request is
        assert stats == sim.stats.to_dict()
    assert stats["requests"] == 1
    assert stats["open_connections"] == 1
    assert sum(stats["responses"].values()) == 1


# Latency


async def test_256_connections_with_two_requests_each_are_all_answered() -> None:
    """256 connections x 2 sequential requests at 50 ms (how fast: ``scripts/bench_simulator.py``)."""
    request = http_request(orjson.dumps(CHAT_BODY))

    async def two_requests(port: int) -> None:
        async with raw(port) as (reader, writer):
            for _ in range(2):
                writer.write(request)
                assert (await read_response(reader))[0] == 200

    async with serve(SimulatorConfig(latency_ms=50)) as sim, anyio.create_task_group() as tg:
        for _ in range(256):
            tg.start_soon(two_requests, sim.port)
    assert sim.stats.requests == 512 and sim.stats.responses == {200: 512}


# Faults, as a client sees them


async def test_429_carries_both_retry_after_headers() -> None:
    faults = Faults(rate_429=1.0, retry_after_s=1.5)
    async with serve(SimulatorConfig(faults=faults)) as sim, client(sim.base_url) as c:
        response = await c.post("/chat/completions", json=CHAT_BODY)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "1500"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


async def test_429_headers_can_be_left_out() -> None:
    faults = Faults(rate_429=1.0, retry_after_s=None)
    async with serve(SimulatorConfig(faults=faults)) as sim, client(sim.base_url) as c:
        response = await c.post("/chat/completions", json=CHAT_BODY)
    assert response.status_code == 429
    assert "retry-after" not in response.headers and "retry-after-ms" not in response.headers


async def test_server_errors_mix_the_5xx_codes() -> None:
    async with serve(SimulatorConfig(faults=Faults(rate_500=1.0))) as sim, client(sim.base_url) as c:
        codes = {(await c.post("/chat/completions", json=CHAT_BODY)).status_code for _ in range(30)}
    assert codes == {500, 502, 503, 504}


async def test_drop_closes_without_a_response() -> None:
    async with serve(SimulatorConfig(faults=Faults(rate_drop=1.0))) as sim, client(sim.base_url) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post("/chat/completions", json=CHAT_BODY)
    assert sim.stats.drops == 1 and sim.stats.responses == {}


async def test_truncated_body_is_an_error() -> None:
    async with serve(SimulatorConfig(faults=Faults(rate_truncate=1.0))) as sim, client(sim.base_url) as c:
        with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|complete message body"):
            await c.post("/chat/completions", json=CHAT_BODY)
    assert sim.stats.truncations == 1


async def test_malformed_is_a_200_that_is_not_json() -> None:
    async with serve(SimulatorConfig(faults=Faults(rate_malformed=1.0))) as sim, client(sim.base_url) as c:
        response = await c.post("/chat/completions", json=CHAT_BODY)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        orjson.loads(response.content)
    assert sim.stats.malformed == 1


async def test_hang_makes_the_client_time_out_and_the_server_exit_promptly() -> None:
    with anyio.fail_after(2):  # hang_s is an hour: exiting serve() must cancel the hang
        async with serve(SimulatorConfig(faults=Faults(rate_timeout=1.0))) as sim:
            async with client(sim.base_url, timeout=0.2) as c:
                with pytest.raises(httpx.ReadTimeout):
                    await c.post("/chat/completions", json=CHAT_BODY)
            await anyio.sleep(0.05)
            assert sim.stats.open_connections == 0  # the client gave up: its hang timer is gone
            # A second hanging request is still open when serve() exits.
            async with raw(sim.port) as (_, writer):
                writer.write(http_request(orjson.dumps(CHAT_BODY)))
                await anyio.sleep(0.05)
    assert sim.stats.hangs == 2 and sim.stats.responses == {}


async def test_a_hang_ends_by_closing_the_connection() -> None:
    faults = Faults(rate_timeout=1.0, hang_s=0.1)
    async with serve(SimulatorConfig(faults=faults)) as sim, client(sim.base_url, timeout=5) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post("/chat/completions", json=CHAT_BODY)


async def test_api_key_is_required_and_never_echoed() -> None:
    config = SimulatorConfig(faults=Faults(require_api_key="sk-right", rate_drop=1.0))
    async with serve(config) as sim:
        async with client(sim.base_url, headers={"Authorization": "Bearer sk-wrong-1234"}) as c:
            wrong = await c.post("/chat/completions", json=CHAT_BODY)
        async with client(sim.base_url) as c:
            missing = await c.get("/models")
    for response in (wrong, missing):
        assert response.status_code == 401  # the 401 wins over the configured drops
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert "sk-" not in response.text
    right = {"Authorization": "Bearer sk-right"}
    async with (
        serve(SimulatorConfig(faults=Faults(require_api_key="sk-right"))) as sim,
        client(sim.base_url, headers=right) as c,
    ):
        assert (await c.get("/models")).status_code == 200


async def test_same_seed_same_faults() -> None:
    faults = Faults(rate_429=0.3, rate_500=0.3)

    async def statuses(seed: int) -> list[int]:
        async with serve(SimulatorConfig(faults=faults, seed=seed)) as sim, client(sim.base_url) as c:
            return [(await c.post("/chat/completions", json=CHAT_BODY)).status_code for _ in range(30)]

    first = await statuses(7)
    assert first == await statuses(7)
    assert first != await statuses(8)
    assert {200, 429} <= set(first)


def test_rates_are_validated() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        Faults(rate_429=1.5)
    with pytest.raises(ValueError, match="add up"):
        Faults(rate_429=0.6, rate_500=0.6)


# Runners


def test_thread_runner_serves_sync_callers_and_stops() -> None:
    with run_in_thread(SimulatorConfig(latency_ms=1)) as sim:
        with httpx.Client(base_url=sim.base_url) as c:
            assert c.post("/chat/completions", json=CHAT_BODY).status_code == 200
        assert sim.stats.requests == 1
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", sim.port), timeout=1):
        pass


def test_thread_runner_reports_a_port_in_use() -> None:
    with run_in_thread() as sim, pytest.raises(OSError), run_in_thread(SimulatorConfig(port=sim.port)):
        pass


def test_run_forever_stops_cleanly_on_sigterm() -> None:
    code = (
        "from batchrun.simulator import run_forever\n"
        "stats = run_forever(on_ready=lambda url: print(url, flush=True))\n"
        "print(stats.requests, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(batchrun.simulator.__file__).parents[2])}
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert httpx.get(f"{base_url}/models").status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert process.stdout.read().strip() == "1"
