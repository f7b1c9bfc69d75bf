"""The run's own local Ray cluster started with the processes a run uses, and no others.

Besides the GCS, the raylet and what the raylet starts (its agents and workers), ``ray.init``
starts three Python processes of Ray's on a new local cluster that a batchrun run never uses:

- the autoscaler's monitor: a cluster of one node, started for one run, never scales. Stopped
  after the GCS (as `ray.shutdown` does), it also spends a second trying to report its SIGTERM
  there before it is killed;
- the log monitor: it sends the workers' log lines to the driver, which ``log_to_driver=False``
  declines;
- the API server: with the dashboard off it loads Ray's usage statistics only, and ``ray.init``
  waits until it is up before it starts the raylet.

Each imports Ray, a CPU second or so; on a machine of two cores, where Ray's start already
takes every core for seconds, that is time the shards wait. ``ray.init`` has no option for
them (``ray start`` has ``--no-monitor`` and ``--include-log-monitor``), so while it starts
the run's own cluster, `without_idle_processes` sets the same two settings on the parameters it
makes and leaves the API server out. These are Ray's private names: where a version of Ray has
them not, the cluster starts as ``ray.init`` starts it. A cluster the run joins is never touched.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def without_idle_processes() -> Iterator[None]:
    """While inside, a cluster ``ray.init`` starts has no autoscaler monitor, no log monitor and
    no API server (module docstring). Not thread-safe: nothing else may start Ray meanwhile."""
    try:
        params: Any = importlib.import_module("ray._private.parameter").RayParams
        node: Any = importlib.import_module("ray._private.node").Node
        made, api_server = params.__init__, node.start_api_server
    except (ImportError, AttributeError):
        yield
        return

    def lean(self: Any, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        self.no_monitor, self.include_log_monitor = True, False

    params.__init__, node.start_api_server = lean, _no_api_server
    try:
        yield
    finally:
        params.__init__, node.start_api_server = made, api_server


def _no_api_server(self: Any, **_: Any) -> None:
    """In place of ``Node.start_api_server``: nothing started, no dashboard address recorded."""
