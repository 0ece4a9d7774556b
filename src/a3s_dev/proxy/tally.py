"""Saying what happens often, at most once per interval, with how many times since (a failed
accept, an idle connection closed to make room): a log line a minute, never one per event.
Pure: the clock is passed in."""

from __future__ import annotations

import time
from collections.abc import Callable


class Tally:
    """Counts an event; `due()` for each says whether to speak now, and with what count."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self.count = 0  # since last said
        self.said_at: float | None = None

    def due(self) -> int | None:
        """Count one more; the count to say now (then start again), or None when it was said
        less than `every` seconds ago."""
        self.count += 1
        now = self.clock()
        if self.said_at is not None and now - self.said_at < self.every:
            return None
        count, self.count, self.said_at = self.count, 0, now
        return count
