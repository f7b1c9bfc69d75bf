"""Ray is an extra: nothing imports it but a run that asks for it (``--ray``)."""

from __future__ import annotations

import subprocess
import sys


def test_the_package_and_its_cli_import_no_ray() -> None:
    code = ("import sys, batchrun, batchrun.cli, batchrun.scale.local\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"
