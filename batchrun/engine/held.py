"""What a refusal that may not be its line's own means: the one place that decides it.

A 401/403 after other lines were answered may be this line's model or resource being off limits
to the key — or the key itself just revoked; a 404 for the path before any success may be this
line's deployment — or a base URL that points where the endpoint is not (`errors.Unconfirmed`,
marked by the client). Such a line is held back until the run knows which:

- a success to a request sent later shows the key and the path work: the lines held from
  before it were refused on their own account, and are written as their failures;
- the failures show the run is doomed (the client turns them into a fatal error, or no line
  ever succeeded while some were 404'd for the path): they are not written, and the next start
  sends them;
- the run stops for any reason (a signal, the budget, an abort): not written either; they are
  decided by the start that sends them again;
- the run ends with every line done, and no success came after them: written, as their own.
"""

from __future__ import annotations

from ..errors import FatalEndpointError
from ..records import Result


class Held:
    """The lines held back, in the order their last attempts were sent."""

    def __init__(self) -> None:
        self._lines: list[Result] = []

    def __bool__(self) -> bool:
        return bool(self._lines)

    def hold(self, result: Result) -> None:
        self._lines.append(result)

    def confirmed_by(self, success: Result) -> list[Result]:
        """The held lines a success shows were refused on their own account: those sent before it."""
        if not self._lines:
            return []
        sent = success.dispatched
        own = [held for held in self._lines if held.dispatched < sent]
        self._lines = [held for held in self._lines if held.dispatched > sent]
        return own

    def at_end(self, *, stopped: bool,
               no_such_path: FatalEndpointError | None) -> tuple[list[Result], FatalEndpointError | None]:
        """What becomes of the lines still held when the workers are done: those to write, and
        why the run must stop instead (``no_such_path``: the client's word that no line succeeded
        and some were 404'd for the path)."""
        lines, self._lines = self._lines, []
        if stopped or not lines:
            return [], None
        if no_such_path is not None:
            return [], no_such_path
        return lines, None
