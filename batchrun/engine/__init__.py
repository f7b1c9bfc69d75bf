"""The one engine every route runs through: `run`, `label`, each Ray shard, the Batch API.

    run.py        a run's lifecycle: checkpoint → what was spent → the pool → publish → report
    carry.py      what earlier starts paid for, which the next start carries against --max-cost
    sources.py    where a line's answer comes from, asked in order before it is sent online
    pool.py       the reader, the workers and the ordered sink, under one task group
    control.py    how the pool is told to stop: a stop drains, an abort drains, a disk failure ends it
    held.py       what a 401/403/404 that may not be its line's own means (held until known)
    document.py   the report document, the one builder every route and the shards' assembly use
"""

from __future__ import annotations

from ..errors import StopBefore
from .control import BAD_LINE_WARNINGS
from .document import report_json
from .pool import Observer
from .run import run_batch
from .sources import Source

__all__ = ["BAD_LINE_WARNINGS", "Observer", "Source", "StopBefore", "report_json", "run_batch"]
