"""The sandbox's clock: frozen (moves only when told) for tests, or wall time for a server."""

from __future__ import annotations

import threading
import time

from iozen_etl.sandbox.seed import SEED_END_MS


class SandboxClock:
    """Unix seconds. A frozen clock starts at the end of the seed data and moves by ``advance``.

    Tests hand ``clock.now`` to a client as its wall clock and ``clock.advance`` as its sleep,
    so waiting out a rate limit moves the sandbox's time and nobody really sleeps.
    """

    def __init__(self, real_time: bool = False, start: float | None = None) -> None:
        self._real_time = real_time
        self._start = SEED_END_MS / 1000.0 if start is None else start
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def real_time(self) -> bool:
        return self._real_time

    def now(self) -> float:
        base = time.time() if self._real_time else self._start
        return base + self._offset

    def monotonic(self) -> float:
        """For a client's monotonic clock: the same time line as ``now``."""
        return self.now()

    def advance(self, seconds: float) -> None:
        """Move time forward (usable as a client's ``sleep``)."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += seconds
