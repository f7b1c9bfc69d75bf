"""Which lines an earlier start of the run already finished, asked line by line as the input
is read again (an answered line is never sent twice: docs/reliability.md, "Checkpoints and resume").
"""

from __future__ import annotations

from ..errors import ConfigError
from ..records import Job, LineError, Result
from .checkpoint import Recovered


class Carryover:
    """Finished results of earlier starts, handed out in input order.

    :param retry_failed: treat failed lines as not finished, so they are sent again.
    """

    def __init__(self, recovered: Recovered, *, retry_failed: bool) -> None:
        self.prefix = recovered.prefix
        self._finished = recovered.finished or {}
        self._previous = recovered.previous
        self._retry_failed = retry_failed

    def take(self, item: Job | LineError) -> Result | None:
        """The earlier result of ``item``'s line, or ``None`` if the line must be (re)done.

        Must be called for every line from the prefix on, in order (earlier output files are
        read in step with the input).

        :raises ConfigError: the earlier result belongs to another line: the files do not match.
        """
        previous = next(self._previous, None) if self._previous is not None else None
        entry = self._finished.pop(item.index, None)
        line = entry.line if entry is not None else previous
        if line is None:
            return None
        try:
            result = Result.from_line(item.index, line)
        except ValueError:
            return None  # unreadable: do the line again
        if result.custom_id != item.custom_id:
            raise ConfigError(
                f"the earlier output does not match the input at line {item.line_no}: it has custom_id "
                f"{result.custom_id!r} where the input has {item.custom_id!r}; run with --restart"
            )
        if self._retry_failed and result.error is not None:
            return None
        return result

    @property
    def left(self) -> int:
        """Lines past the reader that earlier starts finished (in the journal), not handed out yet;
        with ``retry_failed``, only the successes."""
        if self._retry_failed:
            return sum(entry.ok for entry in self._finished.values())
        return len(self._finished)

    def close(self) -> None:
        if self._previous is not None:
            self._previous.close()
