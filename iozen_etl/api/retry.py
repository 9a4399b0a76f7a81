"""The retry policy as data: what is retried, how long each wait is, and when to give up.

Waits never sleep here: the client passes the random source and reads the clock, so tests
decide every number. Two kinds of wait:

- **429 rate_limit_exceeded**: the first of body ``details.retry_after`` (s), the ``Retry-After``
  header (s or HTTP date), ``X-RateLimit-Reset`` (Unix ms), or the policy's own backoff
  (docs/decisions.md #9); never below ``rate_limit_floor`` so ``Retry-After: 0`` cannot spin, plus a
  little jitter so concurrent streams do not retry in lockstep.
- **5xx, timeouts, dropped connections, malformed bodies**: capped exponential backoff with full
  jitter (uniform between 0 and ``min(max_delay, base_delay * 2**retry)``).

Every wait counts against ``max_total_wait`` for one call; a wait that would pass it raises
``WaitCeilingReached`` so the caller checkpoints and stops instead of hanging.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed request is retried; the defaults suit a nightly sync."""

    max_attempts: int = 6  # attempts of a request that keeps failing other than with 429
    # 429 retries of one request: the server said when to come back, so waiting is right and the
    # total-wait ceiling normally ends it first (WaitCeilingReached: stop, resume later).
    max_throttled: int = 100
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total_wait: float = 300.0
    retryable_statuses: frozenset[int] = RETRYABLE_STATUSES
    rate_limit_floor: float = 1.0
    rate_limit_jitter: float = 0.5
    # A 2xx whose body is not the JSON envelope is a transport fault (truncated or replaced on
    # the way); retried for GETs and keyed POSTs, like a dropped connection.
    retry_malformed: bool = True

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for the ``retry``-th retry (0-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2**retry))
        return rng.uniform(0.0, ceiling)

    def rate_limit_wait(
        self,
        retry: int,
        rng: random.Random,
        *,
        details: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        now_wall: float,
    ) -> float:
        """Seconds to wait after a 429, from the first hint the server gave."""
        hint = rate_limit_hint(details, headers, now_wall)
        if hint is None:
            hint = self.backoff(retry, rng)
        return max(hint, self.rate_limit_floor) + rng.uniform(0.0, self.rate_limit_jitter)


def rate_limit_hint(
    details: Mapping[str, Any] | None, headers: Mapping[str, str], now_wall: float
) -> float | None:
    """The server's own idea of when to retry, in seconds from now, or None if it gave none."""
    retry_after = (details or {}).get("retry_after")
    if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
        return max(0.0, float(retry_after))
    header = headers.get("retry-after")
    if header is not None:
        seconds = _parse_retry_after(header.strip(), now_wall)
        if seconds is not None:
            return seconds
    reset = headers.get("x-ratelimit-reset")
    if reset is not None:
        try:
            return max(0.0, float(reset) / 1000.0 - now_wall)
        except ValueError:
            return None
    return None


def _parse_retry_after(value: str, now_wall: float) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now_wall)
    except (TypeError, ValueError):
        return None
