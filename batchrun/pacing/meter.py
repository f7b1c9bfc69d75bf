"""Requests and tokens answered over the last minute, for the live display beside the limits."""

from __future__ import annotations

import time

WINDOW_SECONDS = 60


class RateWindow:
    """Answers in one-second slots over the last minute.

    On the wall clock (not the pacing clock), so that it reads the same inside and outside the
    event loop.
    """

    def __init__(self) -> None:
        self._slots = [(0, 0, 0)] * WINDOW_SECONDS  # (second, requests, tokens)

    def add(self, tokens: int) -> None:
        second = int(time.monotonic())
        i = second % WINDOW_SECONDS
        at, requests, total = self._slots[i]
        self._slots[i] = (second, requests + 1, total + tokens) if at == second else (second, 1, tokens)

    def per_minute(self) -> tuple[int, int]:
        """Requests and tokens answered in the last 60 s."""
        floor = int(time.monotonic()) - WINDOW_SECONDS
        live = [(r, t) for at, r, t in self._slots if at > floor]
        return sum(r for r, _ in live), sum(t for _, t in live)
