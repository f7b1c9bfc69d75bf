"""Peak memory of `batchrun run` against a server whose every answer is an endless body.

    python scripts/bench_endless_bodies.py [--concurrency 16,64] [--lines-per-slot 2]

A loopback server (on a thread here) answers each request with a 200 and a chunked body of
64 KiB chunks sent as fast as they are read, forever. Every line ends as `response_too_large`
at the 64 MiB cap; what is measured is the peak RSS of the batchrun process, beside what
``concurrency`` bodies at their caps would hold together (the bound without a shared budget).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import orjson

from batchrun.bodies import DEFAULT_MAX_RESPONSE_BYTES

_CHUNK = b"%x\r\n" % 2**16 + b"x" * 2**16 + b"\r\n"
_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
_OPEN = b'{"choices": [], "pad": "'


async def _endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        writer.write(_HEAD + b"%x\r\n" % len(_OPEN) + _OPEN + b"\r\n")
        while True:
            writer.write(_CHUNK)
            await writer.drain()
    writer.transport.abort()


def _serve() -> int:
    ready: list[int] = []
    started = threading.Event()

    async def main() -> None:
        server = await asyncio.start_server(_endless, "127.0.0.1", 0)
        ready.append(server.sockets[0].getsockname()[1])
        started.set()
        await server.serve_forever()

    threading.Thread(target=asyncio.run, args=(main(),), daemon=True).start()
    started.wait()
    return ready[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--lines-per-slot", type=int, default=2)
    args = parser.parse_args()
    port = _serve()
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    print("| concurrency | lines | peak RSS | concurrency x cap |\n|---:|---:|---:|---:|")
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        lines = concurrency * args.lines_per_slot
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "in.jsonl"
            source.write_bytes(b"".join(
                orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]}) + b"\n"
                for i in range(lines)))
            peak = _peak_of([sys.executable, "-m", "batchrun", "run", str(source), "-q", "-c", str(concurrency),
                             "--max-attempts", "1", "--timeout", "600", "--base-url", f"http://127.0.0.1:{port}/v1"],
                            env)
        bound = concurrency * DEFAULT_MAX_RESPONSE_BYTES
        print(f"| {concurrency} | {lines} | {peak / 2**20:,.0f} MiB | {bound / 2**20:,.0f} MiB |")


def _peak_of(argv: list[str], env: dict[str, str]) -> int:
    """The peak RSS in bytes of ``argv``, read in a middle child whose only child it is (this
    process's own RUSAGE_CHILDREN would be the largest of all runs so far)."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], env=None, stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) * 1024


if __name__ == "__main__":
    main()
