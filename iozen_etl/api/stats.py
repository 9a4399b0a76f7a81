"""Counters of what a client did, safe to update from several threads and to put in metadata."""

from __future__ import annotations

import threading
from collections import Counter


class ClientStats:
    """Requests sent, retries, 429s, time spent waiting, and failures by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.throttled = 0
        self.seconds_waited = 0.0  # sleeping before retries
        self.seconds_paced = 0.0  # held back by the rate budget before sending
        self.errors_by_kind: Counter[str] = Counter()

    def count_request(self, paced: float) -> None:
        with self._lock:
            self.requests += 1
            self.seconds_paced += paced

    def count_retry(self, kind: str, waited: float) -> None:
        with self._lock:
            self.retries += 1
            self.seconds_waited += waited
            self.errors_by_kind[kind] += 1
            if kind == "rate_limited":
                self.throttled += 1

    def count_failure(self, kind: str) -> None:
        with self._lock:
            self.errors_by_kind[kind] += 1
            if kind == "rate_limited":
                self.throttled += 1

    def snapshot(self) -> dict[str, int | float]:
        """A flat copy: ``errors.<kind>`` holds each failure kind's count."""
        with self._lock:
            flat: dict[str, int | float] = {
                "requests": self.requests,
                "retries": self.retries,
                "throttled": self.throttled,
                "seconds_waited": round(self.seconds_waited, 3),
                "seconds_paced": round(self.seconds_paced, 3),
            }
            flat.update({f"errors.{kind}": n for kind, n in sorted(self.errors_by_kind.items())})
            return flat

    def __repr__(self) -> str:
        return f"ClientStats({self.snapshot()})"
