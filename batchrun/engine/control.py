"""How the pool is told to stop: no new requests, and a deadline for those already on the wire.

Every way a run ends early goes through here. A stop (a signal, the budget) and an abort (a
condition that dooms the rest of the run: the key revoked, the account out of quota, the
endpoint down past ``--max-outage``) both close the door on new requests and let those on the
wire finish within the grace period, so an answer the provider is already computing — and will
bill — is written, not bought again by the next start. Only a disk failure ends everything at
once: nothing more could be written anyway.
"""

from __future__ import annotations

import logging

import anyio

from ..stats import EXIT_STOPPED, RunStats
from .held import Held

log = logging.getLogger("batchrun")

BAD_LINE_WARNINGS = 20  # bad input lines logged one by one; the rest are counted (the errors file has each)


class Control:
    """:param drain_timeout: seconds the requests on the wire get after a stop or an abort."""

    def __init__(self, stats: RunStats, drain_timeout: float) -> None:
        self.stats = stats
        self.drain_timeout = drain_timeout
        self.stopping = False
        self.draining = False  # stopping, with a grace period for the requests on the wire
        self.aborted = False
        self.wire: anyio.CapacityLimiter | None = None  # the pacer's slots: one per request on the wire
        self.fed = 0  # lines handed on by the reader
        self.fed_all = False  # the reader reached the end of the input
        self.bad_lines = 0  # input lines that cannot be sent, met by this start
        self.held = Held()
        self.feed_scope = anyio.CancelScope()
        self.workers_scope = anyio.CancelScope()
        self.run_scope = anyio.CancelScope()

    def bad_line(self, message: str) -> None:
        self.bad_lines += 1
        if self.bad_lines <= BAD_LINE_WARNINGS:
            log.warning("%s", message)

    def stop(self, reason: str, code: int, grace: float | None) -> None:
        """Stop dispatching; in-flight requests get ``grace`` seconds (``None``: no limit).

        A second stop cancels the requests still in flight.
        """
        if self.stopping:
            self.workers_scope.cancel()
            return
        self.stopping = True
        self.stats.stop_reason, self.stats.stop_code = reason, code
        self._drain(grace)

    def abort(self, reason: str, *, disk: bool = False, next_step: str | None = None) -> None:
        """Stop: a condition that dooms the rest of the run. The requests on the wire still
        drain (``drain_timeout``) and their answers are written; lines held back
        (`held.Held`) are not, and the next start sends them.

        :param disk: writing failed: everything stops at once.
        :param next_step: what to fix before the next start (`RunStats.next_step`).
        """
        if not self.aborted:  # the first reason is the one to report
            self.aborted = True
            log.error("stopping: %s", reason)
            self.stats.stop_reason, self.stats.stop_code = reason, EXIT_STOPPED
            self.stats.next_step = next_step
            self.stopping = True
            self._drain(self.drain_timeout)  # within a stop's own grace, if that is shorter
        if disk:
            self.run_scope.cancel()

    def _drain(self, grace: float | None) -> None:
        self.feed_scope.cancel()
        if grace is not None:
            self.workers_scope.deadline = min(self.workers_scope.deadline, anyio.current_time() + grace)
            self.draining = True
            self.off_the_wire()

    @property
    def on_the_wire(self) -> int:
        """Requests sent and not yet answered (not those waiting out a backoff or their pace)."""
        return int(self.wire.borrowed_tokens) if self.wire is not None else 0

    def off_the_wire(self) -> None:
        """An attempt has its answer (or failure). Draining, once none is left on the wire, the
        drain is done: no line still waiting is sent."""
        if self.draining and not self.on_the_wire:
            self.workers_scope.cancel()
