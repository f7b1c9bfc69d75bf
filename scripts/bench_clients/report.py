"""Shared by the bench clients: time the request phase and report it to bench.py.

Each client imports what it needs first, then calls :func:`timed` around its request phase,
so interpreter start-up and imports are outside the clock for every client alike. The report
is one JSON line on stdout, the last line the client prints:
``{"ok": successes or null, "failed": failures or null, "wall_s": ..., "cpu_s": ...}``, where
``failed`` counts the lines a client gave up on (null when it does not say) and ``cpu_s`` is this
process's user + system time over the phase, all threads included.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import NamedTuple


class Outcome(NamedTuple):
    """What a request phase ended with. ``ok`` is None when bench.py counts the output file."""

    ok: int | None
    exit_code: int = 0
    failed: int | None = None


def timed(phase: Callable[[], Outcome]) -> int:
    """Run ``phase``, print the report, and return the exit code the client should exit with."""
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = phase()
    report = {"ok": outcome.ok, "failed": outcome.failed, "wall_s": time.perf_counter() - wall,
              "cpu_s": time.process_time() - cpu}
    print(json.dumps(report), flush=True)
    return outcome.exit_code
