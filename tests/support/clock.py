"""Injected time for clients and the replay: clocks that move only when something waits."""

from __future__ import annotations

import threading

WALL_START = 1_900_000_000.0


class FakeTime:
    """A monotonic clock (from 1000 s), a wall clock (``WALL_START`` + monotonic) and a sleep
    that only moves them forward; every sleep is recorded. Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_START + self.now

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            # time.sleep refuses it too: a negative wait is a bug in the caller.
            raise ValueError(f"sleep length must be non-negative, got {seconds}")
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        """Time passing without anyone waiting (not recorded as a sleep)."""
        with self._lock:
            self.now += seconds
