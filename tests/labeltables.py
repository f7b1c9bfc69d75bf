"""`batchrun label` over loopback: a server answering each prompt as a test says, the CLI
invoked in-process, and tables written and read back with Python's csv module."""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
from click.testing import CliRunner

from batchrun.cli import main

from .rawserver import RawServer, Seen, http


def prompt(seen: Seen) -> str:
    return str(orjson.loads(seen.body)["messages"][-1]["content"])


def answering(answer: Callable[[str, int], str | None]) -> RawServer:
    """A server answering a prompt ``answer(prompt, times seen before)``; ``None`` is a 500."""
    attempts: Counter[str] = Counter()

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        text = prompt(seen)
        content = answer(text, attempts[text])
        attempts[text] += 1
        if content is None:
            writer.write(http(500, b'{"error": {"message": "down", "type": "server_error"}}'))
        else:
            writer.write(http(200, orjson.dumps({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})))
        return True

    return RawServer(handler)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["label", *args], catch_exceptions=False)
    return result.exit_code, result.stderr


def write_table(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, dialect="excel-tab" if path.suffix == ".tsv" else "excel").writerows(rows)
    return path


def read_table(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f, dialect="excel-tab" if path.suffix == ".tsv" else "excel"))
