"""Every module of batchrun imports first, on its own.

`import batchrun` imports nothing by itself (its names are imported when first used), so which
module a process imports first is up to the process: a Ray worker imports its task's module, a
test or a script any one it uses. An import cycle through a package's ``__init__`` then breaks
only for the module that starts it, which no other test need happen to import first.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import batchrun

# Run as ``python -m``: importing it runs the command.
_RUNS_ON_IMPORT = {"batchrun.__main__"}

_EACH_FIRST = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "batchrun" or m.startswith("batchrun.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
"""


def test_every_module_imports_when_it_is_the_first_of_batchrun_imported() -> None:
    names = [info.name for info in pkgutil.walk_packages(batchrun.__path__, "batchrun.")
             if info.name not in _RUNS_ON_IMPORT]
    assert len(names) > 100  # the walk found the package's modules
    imported = subprocess.run([sys.executable, "-c", _EACH_FIRST, *names], capture_output=True, text=True,
                              check=True)
    assert imported.stdout.strip() == ""
