"""Where a line's answer comes from: sources asked in order, before the line is sent online.

    carried over (disk/resume.py)  what earlier starts of this output finished
    response cache (cache/)        what was answered before, by any run (``--cache``)
    Batch API (batchapi/answers.py) what the provider's batches answered
    …                              any other source a route adds (a tier)
    online                         the pool's workers, when no source has the answer

A source answers a line (a `Result`, written as it is, never sent), passes it on (``None``: the
next one is asked), or says that the run must stop before it (`StopBefore`): a line a source
will answer only later (a batch held back by ``--max-cost``) is neither sent online nor written,
and neither is any line after it; a later start goes on from there. Adding a source changes
nothing in the pool: it is one more entry in the list `run_batch` is given.

Sources are asked for every line in input order (they may read their files in step with the
input), from the end of the ordered prefix on. An answer that earlier starts did not already
pay for (anything but a carried-over line) is charged against ``--max-cost`` as it is taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..records import Job, LineError, Result


class Source(Protocol):
    """Lines answered before anything is sent, asked for in input order; ``None``: ask the next."""

    def take(self, item: Job | LineError) -> Result | None:
        """:raises StopBefore: the run must stop before this line."""
        ...


def first_answer(sources: Sequence[Source], item: Job | LineError) -> Result | None:
    """The answer of the first source that has one.

    :raises StopBefore: a source says the run stops before this line.
    """
    for source in sources:
        result = source.take(item)
        if result is not None:
            return result
    return None
