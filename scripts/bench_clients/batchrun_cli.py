"""Bench client ``batchrun``: the real CLI, run exactly as ``python -m batchrun`` runs it.

    python batchrun_cli.py run INPUT -o OUT --base-url URL --concurrency C -q

The arguments reach batchrun's ``__main__`` unchanged (through runpy); the only addition is
the clock around it. batchrun's modules are imported before the clock starts, as every client
imports its libraries first. Exits with batchrun's exit code; bench.py checks the output file.
"""

from __future__ import annotations

import runpy
import sys

from report import Outcome, timed

import batchrun.cli  # noqa: F401  (imported before the clock, like every client's libraries)


def run_cli() -> Outcome:
    try:
        runpy.run_module("batchrun", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    return Outcome(None, code if isinstance(code, int) else 1)


if __name__ == "__main__":
    sys.exit(timed(run_cli))
