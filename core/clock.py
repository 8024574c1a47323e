"""Clocks for the loop: the wall clock in production, a simulated one for replays and tests."""

from __future__ import annotations

__all__ = ["SimClock"]


class SimClock:
    """A clock that only moves when the loop sleeps: a day of data replays in a fraction of a second."""

    def __init__(self, start: float) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        """Return the simulated time (epoch seconds)."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Advance the simulated time."""
        if seconds > 0:
            self.now += seconds
