"""Batchrun's own CPU per request in `Client.send`, with nothing else in the process: the
endpoint is an object in the same process that answers at once, so every microsecond counted
is batchrun's (pacing, the attempt, retries, parsing the answer).

    python scripts/bench_client.py [--requests 100000] [--concurrency 64] [--repeat 5] [--retries loop,...]

Two paths: every request answered 200 at once; and every request answered 500 first and 200
on its retry (backoff 0), which is the cost of one retry. Figures are CPU µs per request (the
process's, ``time.process_time``), the median and the range over the repeats.

``--retries`` names the retry loops to compare, on the second path (docs/libraries.md):
``loop``, `Client.finish` as it is; ``tenacity``, an ``AsyncRetrying`` per retried line asking
the same policy as the Batch API's calls do (`batchapi.api`), the first failure replayed into it;
``strategies``, the plain loop asking tenacity's own strategy objects (``wait_random_exponential``,
``stop_after_attempt``) with a ``RetryCallState`` per line.
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
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from batchrun.batchapi.api import _Decision
from batchrun.client import Client, _failure, _finished
from batchrun.client import Retrying as Pending
from batchrun.config import RetryPolicy, RunConfig
from batchrun.errors import RequestError, RetryableError
from batchrun.records import Job, Result
from batchrun.retry import Retries
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


class TenacityClient(Client):
    """`Client` whose retries are an ``AsyncRetrying`` per retried line, as the Batch API's calls'."""

    async def finish(self, pending: Pending) -> Result:
        job, tally = pending.job, pending.tally
        replay: RetryableError | None = pending.error

        async def attempt() -> Result:
            nonlocal replay
            if replay is not None:  # the first attempt's failure, as tenacity's own first outcome
                error, replay = replay, None
                raise error
            return await self._attempt(job, tally)

        decision = _Decision(Retries(self._config.retry))
        retrying = AsyncRetrying(sleep=self._clock.sleep, retry=retry_if_exception_type(RetryableError),
                                 stop=decision.stop, wait=decision.wait, reraise=True)
        try:
            return _finished(await retrying(attempt), tally, self._epoch)
        except RequestError as exc:
            return _finished(_failure(job, exc), tally, self._epoch)


class StrategiesClient(Client):
    """`Client` whose loop asks tenacity's strategy objects, with a ``RetryCallState`` per line."""

    async def finish(self, pending: Pending) -> Result:
        job, tally, error = pending.job, pending.tally, pending.error
        policy = self._config.retry
        stop = stop_after_attempt(policy.max_attempts)
        wait = wait_random_exponential(multiplier=policy.backoff_base, max=policy.backoff_max)
        state = RetryCallState(_HOLDER, None, (), {})
        while True:
            state.attempt_number = tally.attempts
            state.set_exception((type(error), error, None))
            if stop(state):
                return _finished(_failure(job, error), tally, self._epoch)
            await self._clock.sleep(wait(state))
            try:
                return _finished(await self._attempt(job, tally), tally, self._epoch)
            except RetryableError as exc:
                error = exc
            except RequestError as exc:
                return _finished(_failure(job, exc), tally, self._epoch)


_HOLDER = Retrying()
CLIENTS: dict[str, type[Client]] = {"loop": Client, "tenacity": TenacityClient, "strategies": StrategiesClient}


async def measure(config: RunConfig, jobs: list[Job], concurrency: int, fail_first: bool,
                  kind: type[Client] = Client) -> float:
    """CPU seconds per request over ``jobs``, sent by ``concurrency`` workers."""
    client = kind(config, transport=Instant(fail_first))
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
    parser.add_argument("--retries", default="loop", help="comma-separated: loop, tenacity, strategies")
    args = parser.parse_args()
    kinds = args.retries.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(Path(tmp) / "in.jsonl", base_url="http://127.0.0.1:9/v1", concurrency=args.concurrency,
                           retry=RetryPolicy(backoff_base=0.0, backoff_max=0.0),
                           outage_threshold=0)  # every first attempt fails on one path: not an outage
        paths = [("200 at once", False, "loop")] + [("500, then 200", True, kind) for kind in kinds]
        for name, fail_first, kind in paths:
            jobs = [Job(i, i + 1, f"req-{i}", "/v1/chat/completions", BODY[:-1] + b',"user":"%d"}' % i,
                        "gpt-4o-mini", 50) for i in range(args.requests)]
            figures = [run_async(measure, config, jobs, args.concurrency, fail_first, CLIENTS[kind]) * 1e6
                       for _ in range(args.repeat)]
            print(f"{name:>14} ({kind:>10}): {statistics.median(figures):6.1f} µs CPU/request "
                  f"[{min(figures):.1f}-{max(figures):.1f}] over {args.repeat} x {args.requests:,}")


if __name__ == "__main__":
    main()
