"""Measure the simulator's own throughput: requests per second and server CPU per request.

The simulator runs in a subprocess through ``run_forever`` (as ``batchrun mock-server`` does);
the load comes from separate processes, each a bare asyncio client holding keep-alive
connections that send one request after another. That client costs a fraction of the server's
CPU per request, so the figures describe the server, not the load generator. Requests are
counted by the server (its stats endpoint) and its CPU time is read with psutil.

    python scripts/bench_simulator.py                       # 128 connections, 0 ms, 5 s
    python scripts/bench_simulator.py --latency-ms 50 -c 256   # timer accuracy under load
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path

import psutil  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[1]
BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Summarise the plot of Hamlet in two sentences."},
        ],
        "max_tokens": 100,
    }
).encode()


class _Connection(asyncio.Protocol):
    """Sends the request, waits for one whole response, repeats until the budget or time is spent."""

    def __init__(self, request: bytes, tally: dict[str, int], deadline: float, done: asyncio.Future[None]) -> None:
        self._request = request
        self._tally = tally
        self._deadline = deadline
        self._done = done
        self._buffer = b""
        self._expected: int | None = None  # bytes of the current response, once its head is read
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if self._expected is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self._buffer[:end].lower()
                length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                self._expected = end + 4 + length
            if len(self._buffer) < self._expected:
                return
            status_ok = self._buffer.startswith(b"HTTP/1.1 200")
            self._tally["ok" if status_ok else "errors"] += 1
            self._buffer = self._buffer[self._expected :]
            self._expected = None
            self._send()

    def _send(self) -> None:
        assert self._transport is not None
        if self._tally["budget"] > 0 and time.monotonic() < self._deadline:
            self._tally["budget"] -= 1
            self._transport.write(self._request)
        else:
            self._transport.close()


async def _drive(port: int, connections: int, budget: int, seconds: float) -> tuple[int, int, float]:
    loop = asyncio.get_running_loop()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    request = head + b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    tally = {"budget": budget, "ok": 0, "errors": 0}
    started = time.monotonic()
    done: list[asyncio.Future[None]] = [loop.create_future() for _ in range(connections)]
    for future in done:
        await loop.create_connection(partial(_Connection, request, tally, started + seconds, future), "127.0.0.1", port)
    await asyncio.gather(*done)
    return tally["ok"], tally["errors"], time.monotonic() - started


def _client(port: int, connections: int, budget: int, seconds: float) -> tuple[int, int, float]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_drive(port, connections, budget, seconds))
    return uvloop.run(_drive(port, connections, budget, seconds))


def _stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_simulator/stats") as response:
        return json.load(response)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--connections", type=int, default=128, help="keep-alive connections in all")
    parser.add_argument("-p", "--processes", type=int, default=1, help="client processes sharing the connections")
    parser.add_argument("-s", "--seconds", type=float, default=5.0)
    parser.add_argument("-n", "--requests", type=int, default=1_000_000, help="stop after this many, whichever first")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()

    code = (
        "import sys\nfrom batchrun.simulator import SimulatorConfig, run_forever\n"
        f"run_forever(SimulatorConfig(latency_ms={args.latency_ms!r}), on_ready=lambda url: print(url, flush=True))\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().strip().rsplit(":", 1)[1].split("/")[0])
        process = psutil.Process(server.pid)
        before, cpu_before = _stats(port)["requests"], sum(process.cpu_times()[:2])
        shares = [
            (port, args.connections // args.processes, args.requests // args.processes, args.seconds)
        ] * args.processes
        with multiprocessing.Pool(args.processes) as pool:
            results = pool.starmap(_client, shares)
        served = _stats(port)["requests"] - before
        cpu = sum(process.cpu_times()[:2]) - cpu_before
    finally:
        server.terminate()
        server.wait(timeout=10)

    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    rate = sum((r[0] + r[1]) / r[2] for r in results)
    print(
        f"load: {args.processes} process(es) x {args.connections // args.processes} connections, "
        f"latency {args.latency_ms:g} ms, {args.seconds:g} s or {args.requests} requests"
    )
    print(f"client: {rate:,.0f} req/s ({ok} ok, {errors} errors)")
    if args.latency_ms:
        ideal = args.connections / (args.latency_ms / 1000)
        print(f"ideal at this latency: {ideal:,.0f} req/s ({rate / ideal:.0%} reached)")
    print(
        f"server: {served} requests, {cpu / served * 1e6:.1f} CPU-µs per request "
        f"(= {served / cpu:,.0f} req/s per busy core)"
    )


if __name__ == "__main__":
    main()
