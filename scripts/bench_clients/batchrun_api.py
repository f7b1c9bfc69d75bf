"""Bench clients ``httpx-pool``, ``httpx-sharded``, ``httpx-aiohttp``, ``aiohttp``: batchrun's
engine through its Python API, over the httpx transport the first argument names.

    python batchrun_api.py TRANSPORT INPUT OUTPUT BASE_URL CONCURRENCY

``batchrun.run_batch(config, transport=...)`` on ``batchrun.runner.run_async`` (uvloop when
installed), as the CLI runs it, so only the transport differs between these clients:

* ``httpx-pool``: one ``httpx.AsyncHTTPTransport``, limits C connections, C kept alive;
* ``httpx-sharded``: C/8 such transports of 8/8 in round robin (``sharded_transport.py``);
* ``httpx-aiohttp``: the ``httpx_aiohttp`` package's ``AiohttpTransport``, limits C/C;
* ``aiohttp``: batchrun's own ``AiohttpTransport`` (its default) for C connections.

The three httpx transports go through batchrun's ``HttpxTransport`` adapter (an
``httpx.Request`` and ``httpx.Response`` per request); the default transport does not need it.

Exits with batchrun's exit code; bench.py checks the output file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import httpx_aiohttp
from report import Outcome, timed
from sharded_transport import ShardedTransport

import batchrun
from batchrun.runner import run_async
from batchrun.transport import AiohttpTransport, Transport


def _limits(concurrency: int) -> httpx.Limits:
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


MakeTransport = Callable[[int], Transport | httpx.AsyncBaseTransport]

TRANSPORTS: dict[str, MakeTransport] = {
    "httpx-pool": lambda c: httpx.AsyncHTTPTransport(limits=_limits(c)),
    "httpx-sharded": ShardedTransport,
    "httpx-aiohttp": lambda c: httpx_aiohttp.AiohttpTransport(limits=_limits(c)),
    "aiohttp": lambda c: AiohttpTransport(max_connections=c),
}


async def run(config: batchrun.RunConfig, make_transport: MakeTransport) -> batchrun.RunStats:
    # Built inside the event loop: some transports bind to the loop that first uses them.
    return await batchrun.run_batch(config, transport=make_transport(config.concurrency))


def main() -> int:
    name, input_path, output_path, base_url, concurrency = sys.argv[1:6]
    make_transport = TRANSPORTS[name]

    def phase() -> Outcome:
        config = batchrun.RunConfig(Path(input_path), Path(output_path), base_url=base_url,
                                    concurrency=int(concurrency))
        stats: batchrun.RunStats = run_async(run, config, make_transport)
        return Outcome(None, stats.exit_code)

    return timed(phase)


if __name__ == "__main__":
    sys.exit(main())
