"""Bench client ``aiohttp-loop``: the practical floor, a minimal aiohttp worker pool.

    python aiohttp_loop.py INPUT BASE_URL CONCURRENCY

C workers take request bodies from a bounded ``asyncio.Queue`` and POST them through one
``aiohttp.ClientSession`` whose connector holds C connections; JSON is parsed with orjson, as
batchrun does. Runs on uvloop when it is installed, as batchrun does, so the two compare on the
same event loop. Prints the report of ``report.py`` with the count of 200 answers that parse.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import orjson
from report import Outcome, timed

try:
    from uvloop import run as run_loop
except ImportError:  # batchrun falls back to plain asyncio too
    from asyncio import run as run_loop  # type: ignore[assignment]

HEADERS = {"content-type": "application/json"}


async def worker(session: aiohttp.ClientSession, url: str, queue: asyncio.Queue[bytes | None]) -> int:
    ok = 0
    while (body := await queue.get()) is not None:
        try:
            async with session.post(url, data=body, headers=HEADERS) as response:
                payload = orjson.loads(await response.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError):
            continue
        if response.status == 200 and "choices" in payload:
            ok += 1
    return ok


async def run(input_path: Path, base_url: str, concurrency: int) -> int:
    url = base_url.rstrip("/") + "/chat/completions"
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        workers = [asyncio.create_task(worker(session, url, queue)) for _ in range(concurrency)]
        with input_path.open("rb") as lines:
            for line in lines:
                await queue.put(orjson.dumps(orjson.loads(line)["body"]))
        for _ in workers:
            await queue.put(None)
        return sum(await asyncio.gather(*workers))


def main() -> int:
    input_path, base_url, concurrency = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    return timed(lambda: Outcome(run_loop(run(input_path, base_url, concurrency))))


if __name__ == "__main__":
    sys.exit(main())
