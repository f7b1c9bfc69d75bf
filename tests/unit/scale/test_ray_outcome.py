"""What the Ray driver makes of a shard's task that Ray dropped, without a cluster: Ray's
exceptions stand in as classes of their own (the module takes Ray as a value)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from batchrun.scale.ray_run import PartOutcome, _outcome
from batchrun.stats import EXIT_STOPPED


class RayError(Exception):
    pass


class TaskCancelledError(RayError):
    pass


class WorkerCrashedError(RayError):
    pass


def ray_raising(error: Exception | None, outcome: PartOutcome | None = None) -> Any:
    def get(ref: object) -> PartOutcome | None:
        if error is not None:
            raise error
        return outcome

    exceptions = SimpleNamespace(RayError=RayError, TaskCancelledError=TaskCancelledError)
    return SimpleNamespace(get=get, exceptions=exceptions)


def test_a_task_ray_dropped_is_a_stopped_shard_not_a_traceback() -> None:
    done = PartOutcome(1, None, 0, 10, 100)
    assert _outcome(ray_raising(None, done), object(), 1) is done
    cancelled = _outcome(ray_raising(TaskCancelledError()), object(), 1)
    assert (cancelled.stop_reason, cancelled.stop_code) == ("interrupted by SIGINT", EXIT_STOPPED)
    died = _outcome(ray_raising(WorkerCrashedError("The worker died unexpectedly\nwhile executing")), object(), 0)
    assert (died.number, died.stop_code) == (0, EXIT_STOPPED)
    assert died.stop_reason == "its Ray task failed: The worker died unexpectedly"
