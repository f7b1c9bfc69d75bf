"""Ray is an extra: nothing imports it but a run that asks for it (``--ray``)."""

from __future__ import annotations

import subprocess
import sys


def test_the_package_and_its_cli_import_no_ray() -> None:
    code = ("import sys, batchrun, batchrun.cli, batchrun.scale.local\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


def test_the_runs_actor_and_a_shards_task_import_only_their_part_of_batchrun() -> None:
    """A Ray worker imports the module of what it runs (`desk` for the run's actor, `ray_run` for
    a shard's task) and, with it, the package: which imports nothing by itself."""
    code = ("import sys, batchrun.scale.desk\n"
            "print(sorted(m for m in ('aiohttp', 'batchrun.api', 'batchrun.engine', 'httpx') if m in sys.modules))\n"
            "import batchrun.scale.ray_run\n"
            "print(sorted(m for m in ('batchrun.api', 'batchrun.label', 'httpx') if m in sys.modules))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.split("\n") == ["[]", "[]", ""]
