"""A rate budget per API key, shared by every request of a process, paced before the server refuses.

The server counts accepted requests in a sliding window (60 s, per key; docs/decisions.md #9) and
reports ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (Unix ms when the oldest counted
request leaves the window) on every response. The budget keeps two views and a request waits
until both allow it:

1. **Its own log**: every request of this process still in flight, plus the time each answered
   one came back, over the last ``window_s + margin_s``. A new request may go when fewer than
   ``limit`` are in it. An answered request is logged at the time its answer *arrived*, the
   latest moment the server can have counted it, so a slot is reused only once the server has
   surely let it go however long the request queued on the way; in steady state this shifts
   every slot by the same amount and costs no throughput. The margin absorbs clock jitter.
2. **The server's view**: the ``Remaining`` of the newest-sent request answered so far, minus
   the requests still in flight that were sent after it. At zero, requests wait until that
   answer's ``Reset``. This covers what the log cannot see (another process on the same key).

A 429 is not logged (the server does not count it) and blocks everyone until its retry time.
The limit is learnt from the headers; until the first answer arrives requests are not held back.
Waiters sleep outside the lock with the injected sleep and then look again.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

DEFAULT_WINDOW_S = 60.0
IN_FLIGHT_POLL_S = 0.05


class RateBudget:
    """The request budget of one API key against one base URL (thread-safe)."""

    def __init__(
        self,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        limit: int | None = None,
        margin_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.window_s = window_s
        self.margin_s = margin_s
        self._limit = limit
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tickets = itertools.count()
        self._in_flight: dict[int, float] = {}  # ticket -> send time
        self._answered: deque[float] = deque()  # arrival times of counted answers, ascending
        self._server_remaining: int | None = None
        self._server_seen_at = float("-inf")  # send time of the request that reported it
        self._server_reset: float | None = None  # on the monotonic clock
        self._blocked_until = float("-inf")

    def __repr__(self) -> str:
        return f"RateBudget(limit={self._limit}, window_s={self.window_s})"

    @property
    def limit(self) -> int | None:
        return self._limit

    def acquire(self) -> tuple[int, float]:
        """Wait until a request may be sent; returns (its ticket, seconds waited).

        Every ticket must come back through ``observe`` (an answer) or ``release`` (none).
        """
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay(now)
                if delay <= 0:
                    ticket = next(self._tickets)
                    self._in_flight[ticket] = now
                    return ticket, waited
            self._sleep(delay)
            waited += delay

    def delay(self) -> float:
        """Seconds until the next request may go (0: now); does not take a slot."""
        with self._lock:
            return max(0.0, self._delay(self._clock()))

    def _delay(self, now: float) -> float:
        span = self.window_s + self.margin_s
        answered = self._answered
        while answered and answered[0] <= now - span:
            answered.popleft()
        if now < self._blocked_until:
            return self._blocked_until - now
        waits = [0.0]
        if self._limit is not None:
            free = self._limit - len(self._in_flight)
            if free <= 0:
                waits.append(IN_FLIGHT_POLL_S)  # a whole budget in flight: wait for answers
            elif len(answered) >= free:
                waits.append(answered[len(answered) - free] + span - now)
        if self._server_remaining is not None and self._server_reset is not None:
            seen_at = self._server_seen_at
            unreported = sum(1 for sent in self._in_flight.values() if sent > seen_at)
            if self._server_remaining - unreported <= 0 and now < self._server_reset:
                waits.append(self._server_reset - now)
        return max(waits)

    def observe(self, ticket: int, headers: Mapping[str, str], *, counted: bool = True) -> None:
        """An answer to ``ticket`` arrived: log it (unless a 429) and learn from its headers."""
        limit = _header_int(headers, "x-ratelimit-limit")
        remaining = _header_int(headers, "x-ratelimit-remaining")
        reset_ms = _header_int(headers, "x-ratelimit-reset")
        with self._lock:
            now = self._clock()
            sent_at = self._in_flight.pop(ticket, now)
            if counted:
                self._answered.append(now)
            if limit is not None and limit > 0:
                self._limit = limit
            if remaining is None or sent_at < self._server_seen_at:
                return  # an older answer than the one already known says nothing new
            self._server_remaining = remaining
            self._server_seen_at = sent_at
            self._server_reset = None
            if reset_ms is not None:
                # Never wait longer than a window on the server's word: guards against clock skew.
                until = min(reset_ms / 1000.0 - self._wall_clock(), self.window_s + self.margin_s)
                self._server_reset = now + max(0.0, until)

    def release(self, ticket: int) -> None:
        """No answer came (dropped, timed out): log it as counted, since the server may have."""
        with self._lock:
            if self._in_flight.pop(ticket, None) is not None:
                self._answered.append(self._clock())

    def refused(self, retry_in: float) -> None:
        """After a 429: nobody sends again for ``retry_in`` seconds."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + retry_in)

    def in_window(self) -> int:
        """Requests of this process in flight or answered within the current window."""
        with self._lock:
            self._delay(self._clock())
            return len(self._in_flight) + len(self._answered)


_registry: dict[str, RateBudget] = {}
_registry_lock = threading.Lock()


def budget_id(api_key: str, base_url: str) -> str:
    """A stable name for a key's budget that does not reveal the key."""
    return hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:16]


def shared_budget(api_key: str, base_url: str) -> RateBudget:
    """The process-wide budget of ``api_key`` at ``base_url`` (created on first use)."""
    name = budget_id(api_key, base_url)
    with _registry_lock:
        budget = _registry.get(name)
        if budget is None:
            budget = _registry[name] = RateBudget()
        return budget


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None
