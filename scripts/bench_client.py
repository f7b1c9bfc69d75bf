"""Batchrun's own CPU per request in `Client.send`, with nothing else in the process: the
endpoint is an object in the same process that answers at once, so every microsecond counted
is batchrun's (pacing, the attempt, retries, parsing the answer).

    python scripts/bench_client.py [--requests 100000] [--concurrency 64] [--repeat 5]

Two paths: every request answered 200 at once; and every request answered 500 first and 200
on its retry (backoff 0), which is the cost of one retry. Figures are CPU µs per request (the
process's, ``time.process_time``), the median and the range over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import orjson
from multidict import CIMultiDict

from batchrun.client import Client
from batchrun.config import RetryPolicy, RunConfig
from batchrun.records import Job
from batchrun.runner import run_async
from batchrun.transport import Reply, Timeouts

ANSWER = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "A short answer."},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}})
FAILED = orjson.dumps({"error": {"message": "boom", "type": "server_error", "code": None}})
BODY = orjson.dumps({"model": "gpt-4o-mini", "max_completion_tokens": 50,
                     "messages": [{"role": "user", "content": "Say something short."}]})


class Instant:
    """An endpoint in the same process: answers at once, 500 first when ``fail_first``."""

    def __init__(self, fail_first: bool) -> None:
        self.fail_first = fail_first
        self.seen: set[bytes] = set()

    async def post(self, url: str, headers: object, body: bytes, timeouts: Timeouts) -> Reply:
        if self.fail_first and body not in self.seen:
            self.seen.add(body)
            return Reply(500, CIMultiDict(), FAILED)
        return Reply(200, CIMultiDict({"x-request-id": "req_1"}), ANSWER)

    async def aclose(self) -> None:
        pass


async def measure(config: RunConfig, jobs: list[Job], concurrency: int, fail_first: bool) -> float:
    """CPU seconds per request over ``jobs``, sent by ``concurrency`` workers."""
    client = Client(config, transport=Instant(fail_first))
    send, receive = anyio.create_memory_object_stream[Job](len(jobs))
    for job in jobs:
        send.send_nowait(job)
    send.close()

    async def worker() -> None:
        async for job in receive.clone():
            result = await client.send(job)
            assert result.ok and result.attempts == 1 + fail_first, result

    started = time.process_time()
    async with client, anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return (time.process_time() - started) / len(jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(Path(tmp) / "in.jsonl", base_url="http://127.0.0.1:9/v1", concurrency=args.concurrency,
                           retry=RetryPolicy(backoff_base=0.0, backoff_max=0.0),
                           outage_threshold=0)  # every first attempt fails on one path: not an outage
        for name, fail_first in (("200 at once", False), ("500, then 200", True)):
            jobs = [Job(i, i + 1, f"req-{i}", "/v1/chat/completions", BODY[:-1] + b',"user":"%d"}' % i,
                        "gpt-4o-mini", 50) for i in range(args.requests)]
            figures = [run_async(measure, config, jobs, args.concurrency, fail_first) * 1e6
                       for _ in range(args.repeat)]
            print(f"{name:>14}: {statistics.median(figures):6.1f} µs CPU/request "
                  f"[{min(figures):.1f}-{max(figures):.1f}] over {args.repeat} x {args.requests:,}")


if __name__ == "__main__":
    main()
