"""Bench client ``openai-sdk``: what a typical user writes with the openai SDK.

    python openai_sdk.py INPUT BASE_URL CONCURRENCY

``AsyncOpenAI`` with its default settings (its own HTTP client, timeouts and ``max_retries``),
every line read into memory, one task per line under ``asyncio.gather``, an
``asyncio.Semaphore(C)`` to bound the requests in flight, plain ``asyncio.run`` (no uvloop).
Prints the report of ``report.py`` with the count of completions that came back.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import openai
from report import Outcome, timed


async def run(input_path: Path, base_url: str, concurrency: int) -> int:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x")
    semaphore = asyncio.Semaphore(concurrency)
    with input_path.open() as lines:
        bodies = [json.loads(line)["body"] for line in lines]

    async def complete(body: dict[str, Any]) -> bool:
        async with semaphore:
            try:
                completion = await client.chat.completions.create(**body)
            except openai.OpenAIError:
                return False
            return bool(completion.choices)

    async with client:
        return sum(await asyncio.gather(*(complete(body) for body in bodies)))


def main() -> int:
    input_path, base_url, concurrency = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    return timed(lambda: Outcome(asyncio.run(run(input_path, base_url, concurrency))))


if __name__ == "__main__":
    sys.exit(main())
