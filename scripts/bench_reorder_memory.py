"""Peak memory when a slow first line makes every later answer wait in the reorder buffer.

    python scripts/bench_reorder_memory.py [--lines 3000] [--answer-kb 300] [--concurrency 16]

An in-process endpoint answers every line at once with ``--answer-kb`` of text, except the
first, which it answers only when nothing else can be dispatched: the window, the byte bound
(`RunConfig.window_bytes`) or the end of the input has stalled the reader. The figures are the
most lines and bytes that waited at once, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import anyio
import orjson
from multidict import CIMultiDict

import batchrun
from batchrun.transport import Reply, Timeouts


class SlowFirst:
    """Answers the first line last: once every other task is blocked."""

    def __init__(self, answer_kb: int) -> None:
        self.text = "y" * (answer_kb * 1024)

    async def post(self, url: str, headers: object, body: bytes, timeouts: Timeouts) -> Reply:
        if b'"line 0"' in body:
            await anyio.wait_all_tasks_blocked()
        answer = {"object": "chat.completion", "model": "gpt-4o-mini",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text},
                               "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
        return Reply(200, CIMultiDict(), orjson.dumps(answer))

    async def aclose(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--answer-kb", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.jsonl"
        with source.open("wb") as f:
            for i in range(args.lines):
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"line {i}"}]}
                f.write(orjson.dumps({"custom_id": f"r{i}", "url": "/v1/chat/completions", "body": body}) + b"\n")
        config = batchrun.RunConfig(source, base_url="http://127.0.0.1:9/v1", concurrency=args.concurrency)
        stats = anyio.run(lambda: batchrun.run_batch(config, transport=SlowFirst(args.answer_kb)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{stats.written:,} lines of {args.answer_kb} KB at C {args.concurrency}: at most {stats.max_buffered:,} "
          f"lines, {stats.max_buffered_bytes / 2**20:,.0f} MiB waiting; peak RSS {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
