"""A sharded run's parts, a few at a time: ``--shards`` slots, each running one part after another.

A plan has more parts than the run has shards (`shards.part_count`). The driver keeps one part
running in each slot and, whenever one ends, starts the next part in input order in the slot it
freed: a slot whose parts run slower (a busier core, slower answers) simply runs fewer of them,
and at the end a core idles for at most about one part's run. Ray gives the next part a worker
a part ended on, already started and with batchrun imported: a part costs some 0.04 s besides
its requests (`phases`).

What runs a part is a `Runner` (Ray's tasks in `ray_run`; a fake in the tests). A part that
stops (Ctrl-C, the cap, the endpoint) stops the run: no further part starts, and the parts
running end as they do (the next start resumes them and starts the rest). Ctrl-C asks every
running part to drain; a second one cancels them outright.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("batchrun")

POLL = 0.25  # seconds between the driver's looks at the parts' progress


class Stopping(Protocol):
    """A part's outcome, as far as the slots care: why it stopped (``None``: it finished)."""

    @property
    def stop_reason(self) -> str | None: ...


H = TypeVar("H")  # a running part's handle
O = TypeVar("O", bound=Stopping)  # noqa: E741 -- a part's outcome
O_co = TypeVar("O_co", bound=Stopping, covariant=True)


class Runner(Protocol[H, O_co]):
    """How the slots start parts and learn they ended."""

    def start(self, part: int) -> H:
        """Start part number ``part``; its handle."""
        ...

    def ended(self, running: list[H], timeout: float) -> list[H]:
        """Those of ``running`` that have ended, as soon as one has, or none after ``timeout``."""
        ...

    def outcome(self, handle: H, part: int) -> O_co:
        """An ended part's outcome."""
        ...

    def cancel(self, handle: H, *, force: bool) -> None:
        """Ask a running part to drain (``force``: end it now)."""
        ...


@dataclass(frozen=True)
class Ran(Generic[O]):
    """A part that ran in this start: in which slot (0-based), when it was started (`time.time`),
    and how it ended."""

    part: int
    slot: int
    submitted: float
    outcome: O


def run_parts(runner: Runner[H, O], parts: Sequence[int], width: int, look: Callable[[], None],
              poll: float = POLL) -> list[Ran[O]]:
    """Run ``parts`` (numbers, in input order) with ``runner``, at most ``width`` at once, each
    started as soon as a slot is free, calling ``look`` at least every ``poll`` seconds.

    :returns: the parts that ran, in the order they ended; those not started (after a stop, or
        Ctrl-C) are not among them.
    """
    waiting = collections.deque(parts)
    free = list(range(width))  # the lowest slot first: a run of fewer parts than slots uses the first ones
    running: dict[H, tuple[int, int, float]] = {}  # → part, slot, when it was started
    ran: list[Ran[O]] = []
    stopping = interrupted = False
    while running or (waiting and not stopping):
        try:
            while waiting and free and not stopping:
                part = waiting.popleft()
                running[runner.start(part)] = (part, free.pop(0), time.time())
            for handle in runner.ended(list(running), poll):
                part, slot, submitted = running[handle]
                outcome = runner.outcome(handle, part)
                del running[handle]  # only now: a Ctrl-C meanwhile leaves it to be asked again
                ran.append(Ran(part, slot, submitted, outcome))
                free = sorted([*free, slot])
                stopping = stopping or outcome.stop_reason is not None
            look()
        except KeyboardInterrupt:
            stopping = True
            if not interrupted:
                log.warning("SIGINT: no new requests in any shard; waiting for the requests in flight "
                            "(again to cancel them)")
            for handle in running:
                runner.cancel(handle, force=interrupted)
            interrupted = True
    return ran
