"""CPU per Batch API control-plane call (`BatchApi.retrieve`), with its retries through tenacity,
against an endpoint in the same process that answers at once: what tenacity costs where it is used.

    python scripts/bench_batch_api.py [--calls 20000] [--repeat 5]

Two paths: every call answered 200 at once; and every call answered 503 first and 200 on its
retry (backoff 0). Figures are CPU µs per call (``time.process_time``), the median and the range
over the repeats. A batch makes a few such calls (upload, create, a poll per --batch-poll
interval, downloads), each for up to 50,000 lines.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from multidict import CIMultiDict

from batchrun.batchapi.api import BatchApi
from batchrun.config import RetryPolicy, RunConfig
from batchrun.pacing import SYSTEM_CLOCK
from batchrun.runner import run_async
from batchrun.transport import Reply, Timeouts

BATCH = b'{"id": "batch_1", "object": "batch", "status": "in_progress", "request_counts": {"total": 5}}'


class Instant:
    """An endpoint in the same process: answers at once, 503 to every other call when ``fail_first``."""

    def __init__(self, fail_first: bool) -> None:
        self.fail_first = fail_first
        self.calls = 0

    async def request(self, method: str, url: str, headers: object, body: bytes | None, timeouts: Timeouts,
                      *, into: object = None) -> Reply:
        self.calls += 1
        if self.fail_first and self.calls % 2:
            return Reply(503, CIMultiDict(), b'{"error": {"message": "busy"}}')
        return Reply(200, CIMultiDict(), BATCH)


async def measure(config: RunConfig, calls: int, fail_first: bool) -> float:
    api = BatchApi(config, Instant(fail_first), SYSTEM_CLOCK)  # type: ignore[arg-type]
    started = time.process_time()
    for _ in range(calls):
        await api.retrieve("batch_1")
    return (time.process_time() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(Path(tmp) / "in.jsonl", base_url="http://127.0.0.1:9/v1",
                           retry=RetryPolicy(backoff_base=0.0, backoff_max=0.0))
        for name, fail_first in (("200 at once", False), ("503, then 200", True)):
            figures = [run_async(measure, config, args.calls, fail_first) * 1e6 for _ in range(args.repeat)]
            print(f"{name:>14}: {statistics.median(figures):6.1f} µs CPU/call "
                  f"[{min(figures):.1f}-{max(figures):.1f}] over {args.repeat} x {args.calls:,}")


if __name__ == "__main__":
    main()
