"""The build's one choice the metadata in pyproject.toml cannot hold: with ``BATCHRUN_MYPYC=1``,
the modules every request line passes through are compiled with mypyc (the compiler that ships
with mypy, which type-checks this code strictly already) into C extensions beside the others.

Without it, and in an editable install, batchrun is pure Python: a compiled module would shadow
its source, and an edit to it would not be run. The compiled build runs the same code; what it
saves is measured in docs/performance.md ("Compiled"):

    pip install mypy 'setuptools>=77' . && BATCHRUN_MYPYC=1 pip install --no-build-isolation --no-deps --force-reinstall .
    BATCHRUN_MYPYC=1 python setup.py build_ext --inplace     # a tree of batchrun/, as the benchmarks do

mypyc type-checks what it compiles, so batchrun's dependencies must be installed first: the
first install brings them (and a pure batchrun), the second puts the compiled one in its place.
"""

import os
import sys

from setuptools import setup

# The per-line path: reading a line, admitting and sending it, reading the answer, pacing,
# writing it in order, counting it in the report. Modules a run uses once (the CLI, the
# checkpoint, the routes' set-up) gain nothing from being compiled.
COMPILED = [
    "reader.py", "records.py", "idset.py", "tokens.py", "usage.py", "json_numbers.py", "output_cap.py",
    "client.py", "transport.py", "bodies.py", "retry.py", "scrub.py", "tiers.py", "stats.py",
    "engine/pool.py", "engine/control.py", "engine/held.py", "engine/sources.py",
    "pacing/pacer.py", "pacing/quota.py", "pacing/acceptance.py", "pacing/headers.py", "pacing/breaker.py",
    "pacing/bucket.py", "pacing/first_burst.py", "pacing/burst_wait.py",
    "disk/writer.py",
    "accounting/report.py", "accounting/timeline.py", "accounting/histogram.py", "accounting/ledger.py",
    "accounting/pricing.py", "accounting/tally.py",
]


def compiled() -> list:
    # pip's editable build runs setuptools' editable_wheel command: pure Python there, whatever is asked.
    if os.environ.get("BATCHRUN_MYPYC") != "1" or "editable_wheel" in sys.argv:
        return []
    from mypyc.build import mypycify

    return mypycify([os.path.join("batchrun", name) for name in COMPILED], group_name="batchrun", opt_level="3")


if __name__ == "__main__":  # as pip's build runs it too; imported, it only names the modules
    setup(ext_modules=compiled())
