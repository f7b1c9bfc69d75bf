"""Bench client ``openai-sdk``: what a typical user writes with the openai SDK.

    python openai_sdk.py INPUT BASE_URL CONCURRENCY [MAX_RETRIES]

``AsyncOpenAI`` with its default settings (its own HTTP client, timeouts and ``max_retries`` 2,
unless MAX_RETRIES is given), every line read into memory, one task per line under
``asyncio.gather``, an ``asyncio.Semaphore(C)`` to bound the requests in flight, plain
``asyncio.run`` (no uvloop). The SDK retries 408/409/429/5xx and connection errors itself:
it waits what retry-after-ms or Retry-After says (up to 2 minutes), else 0.5 s doubling up to
8 s, less up to 25% jitter, and its task keeps its semaphore slot meanwhile. Prints the report
of ``report.py`` with the count of completions that came back (``ok``) and of lines that raised
or came back without choices (``failed``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import openai
from report import Outcome, timed


async def run(input_path: Path, base_url: str, concurrency: int, max_retries: int | None) -> tuple[int, int]:
    """(completions that came back, lines that failed)."""
    options: dict[str, Any] = {} if max_retries is None else {"max_retries": max_retries}
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", **options)
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
        ok = sum(await asyncio.gather(*(complete(body) for body in bodies)))
    return ok, len(bodies) - ok


def main() -> int:
    input_path, base_url, concurrency = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    max_retries = int(sys.argv[4]) if len(sys.argv) > 4 else None

    def phase() -> Outcome:
        ok, failed = asyncio.run(run(input_path, base_url, concurrency, max_retries))
        return Outcome(ok, failed=failed)

    return timed(phase)


if __name__ == "__main__":
    sys.exit(main())
