"""`lean.without_idle_processes`: Ray's parameters while a run's own cluster starts, and after."""

from __future__ import annotations

import pytest

from batchrun.scale.lean import without_idle_processes

pytest.importorskip("ray")

from ray._private.node import Node  # only with Ray installed
from ray._private.parameter import RayParams


def test_inside_no_monitor_log_monitor_or_api_server_and_ray_as_it_was_after() -> None:
    made, api_server = RayParams.__init__, Node.start_api_server
    with without_idle_processes():
        params = RayParams(num_cpus=2)
        assert (params.no_monitor, params.include_log_monitor, params.num_cpus) == (True, False, 2)
        assert Node.start_api_server is not api_server
    assert (RayParams.__init__, Node.start_api_server) == (made, api_server)
    params = RayParams()
    assert (params.no_monitor, params.include_log_monitor) == (False, None)


def test_ray_as_it_was_after_an_error_inside() -> None:
    made = RayParams.__init__
    with pytest.raises(RuntimeError), without_idle_processes():
        raise RuntimeError("ray.init failed")
    assert RayParams.__init__ is made
