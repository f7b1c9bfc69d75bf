"""Helpers shared by the tests: JSONL files in and out."""

from __future__ import annotations

from pathlib import Path

import orjson


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def chat_line(i: int, content: str | None = None, **body: object) -> dict[str, object]:
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content or f"question {i}"}], **body},
    }


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder``, checkpoints included."""
    return [path for path in folder.rglob("*") if path.is_file()]
