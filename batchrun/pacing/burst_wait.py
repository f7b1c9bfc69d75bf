"""The first answers' wait: once a run's first answer is in, what would be sent next waits until
the rest of the run's first burst (the requests sent before any answer) is answered too, or for
`BURST_WAIT` times as long as the burst took to send, if sooner (`pacer`'s docstring says why).
"""

from __future__ import annotations

import anyio

from .clock import Clock

# The first burst's answers come back about as spread out as it left, and the server's own
# delays spread them further: the first answers wait for the rest at most this many times as
# long as the burst took to send (a request that hangs must not hold the run).
BURST_WAIT = 2.0


class BurstWait:
    """The first burst's requests, counted out as they are answered or cancelled.

    :ivar answered: some request of the run was answered.
    :ivar until: what is sent next waits until then at most (0: nothing waits).
    :ivar watching: answers still count (`answer`): none came back yet, or the burst is not all in.
    """

    def __init__(self) -> None:
        self.answered = False
        self.until = 0.0
        self.watching = True
        self._sent: tuple[float, float] | None = None  # when its first and last requests left
        self._last = 0  # the number of its last request
        self._left = 0  # its requests neither answered nor cancelled yet, once the wait is on
        self._gone = 0  # its requests cancelled before the first answer came back
        self._in = anyio.Event()  # set when they are all in, or the wait is over
        self._timing = False  # a request is keeping the wait's time (`wait`)

    def sent(self, now: float) -> None:
        """A request of the burst left (one sent before any answer)."""
        self._sent = (now, now) if self._sent is None else (self._sent[0], now)

    def answer(self, seq: int, now: float, issued: int) -> None:
        """Count the answer to request number ``seq``; the first answer starts the wait.

        :param issued: requests admitted so far, numbered from 1: at the first answer, the burst.
        """
        if not self.answered:
            self.answered = True
            first, last = self._sent or (now, now)
            if last > first:
                self.until = now + BURST_WAIT * (last - first)
                self._last, self._left = issued, issued - self._gone
            else:
                self.watching = False
        self._count_out(seq)

    def cancel(self, seq: int) -> None:
        """Count a request cancelled in flight or before it was sent: it will not be answered."""
        if not self.answered:
            self._gone += 1
        else:
            self._count_out(seq)

    def over(self) -> None:
        """End the wait now: the answers in have told what the rest could."""
        self._left = 0
        self._done()

    async def wait(self, clock: Clock) -> None:
        """Wait until the burst is in, or `until`. The first to wait keeps the time for all: a
        timer each would cost a task per slot."""
        done = self._in
        if self._timing:
            await done.wait()
        else:
            self._timing = True
            try:
                left = self.until - clock.now()
                if left > 0 and not done.is_set():  # (a sleep may not be given a negative time)

                    async def time_out() -> None:
                        await clock.sleep(left)
                        done.set()

                    async with anyio.create_task_group() as waiting:
                        waiting.start_soon(time_out)
                        await done.wait()
                        waiting.cancel_scope.cancel()
            finally:
                done.set()  # over for all, even if the one keeping the time was cancelled
        self.until = 0.0

    def _count_out(self, seq: int) -> None:
        if self._left and seq <= self._last:
            self._left -= 1
            if not self._left:
                self._done()

    def _done(self) -> None:
        self.watching = False
        self._in.set()
