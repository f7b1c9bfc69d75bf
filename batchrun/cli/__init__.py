"""The command line: each command parses options, builds the config, runs once, maps the exit code.

Only this package (`progress`, `summary`, `tables` included) talks to the terminal. One module per command; the
options every engine-backed command shares, and how they become a run, are in `engine_options`.
"""

from __future__ import annotations

from . import cache, label, mock_server, report, run  # noqa: F401  (each registers its command)
from .group import main

__all__ = ["main"]
