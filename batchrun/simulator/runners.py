"""Running the simulator on an event loop of its own: in a thread, or in the foreground.

* :func:`run_in_thread` — ``with run_in_thread(config) as sim`` from sync or async code: a
  daemon thread serves while the caller's loop, if any, stays untouched (``--mock`` runs).
* :func:`run_forever` — blocks until SIGINT/SIGTERM (``batchrun mock-server``).

Both start through `batchrun.runner.run_async`, so on uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

from ..runner import run_async
from .server import Simulator, SimulatorConfig, SimulatorStats, serve

__all__ = ["run_forever", "run_in_thread"]

@contextlib.contextmanager
def run_in_thread(
    config: SimulatorConfig | None = None, *, clock: Callable[[], float] | None = None
) -> Iterator[Simulator]:
    """Run the simulator on its own event loop (uvloop if installed) in a daemon thread.

    Returns once the server listens; stops it and joins the thread on exit. The caller's own
    loop, if any, is not involved, so this works from sync and async code alike.

    :param clock: passed to :func:`~.server.serve` (a test's fake clock for limits and batches).

    :raises OSError: if the address cannot be bound.
    """
    started: concurrent.futures.Future[tuple[Simulator, asyncio.AbstractEventLoop, asyncio.Future[None]]]
    started = concurrent.futures.Future()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()
        try:
            async with serve(config, clock=clock) as sim:
                started.set_result((sim, loop, stop))
                await stop
        except BaseException as exc:
            if started.done():
                raise
            started.set_exception(exc)

    thread = threading.Thread(target=run_async, args=(main,), name="batchrun-simulator", daemon=True)
    thread.start()
    sim, loop, stop = started.result()
    try:
        yield sim
    finally:
        loop.call_soon_threadsafe(_resolve, stop)
        thread.join()


def run_forever(config: SimulatorConfig | None = None, on_ready: Callable[[str], None] | None = None) -> SimulatorStats:
    """Serve until SIGINT or SIGTERM, on uvloop if installed; for ``batchrun mock-server``.

    Call it from the main thread, where signal handlers can be installed.

    :param on_ready: called with the base URL (``http://127.0.0.1:<port>/v1``) once listening.
    :returns: the final counters, after every connection has been closed.
    :raises OSError: if the address cannot be bound.
    """

    async def main() -> SimulatorStats:
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            # Not available on Windows loops: there Ctrl-C raises KeyboardInterrupt instead.
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, _resolve, stop)
        try:
            async with serve(config) as sim:
                if on_ready is not None:
                    on_ready(sim.base_url)
                await stop
            return sim.stats
        finally:
            for sig in signals:
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(sig)

    result: SimulatorStats = run_async(main)
    return result


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
