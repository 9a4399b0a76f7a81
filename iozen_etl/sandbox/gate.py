"""The gate in front of the endpoints: every check a known route passes before its handler.

In the documented order: key (401), archived workspace (403), rate limit (429, not counted),
injected faults, scopes (403), plan features (403). The gate also keeps the rate-limit headers
and injects the faults that strike after the endpoint ran (drop, truncate, html) and latency.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from iozen_etl.sandbox.clock import SandboxClock
from iozen_etl.sandbox.config import PLAN_RATE_LIMITS, FaultRule, SandboxConfig
from iozen_etl.sandbox.protocol import Problem, SandboxResponse
from iozen_etl.sandbox.routes import Route
from iozen_etl.sandbox.state import KeyState

PLAN_FEATURES = {"pro": frozenset[str](), "business": frozenset({"webhooks"})}
_HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
)

Headers = list[tuple[str, str]]


@dataclass
class Verdict:
    """The gate's answer: the rate-limit headers to send, and the refusal if there is one."""

    rate_headers: Headers
    refusal: Problem | None = None


class Gate:
    """Rate-limit windows, fault draws (seeded) and the checks, over one config and clock."""

    def __init__(self, config: SandboxConfig, clock: SandboxClock) -> None:
        self.config = config
        self.clock = clock
        self._fault_rng = random.Random(f"faults-{config.seed}")
        self._burst_left = 0
        # Answers each fault kind changed (a 429 burst counts each of its answers): what a test
        # reads to say how many requests met a fault.
        self.injected: Counter[str] = Counter()

    def admit(self, route: Route, key: KeyState | None) -> Verdict:
        """Let the request through to ``route`` or refuse it; a let-through one is counted."""
        if key is None:
            return Verdict(self._anonymous_headers(), Problem(401, "authentication_required"))
        if self.config.workspace_archived:
            return Verdict(self.rate_headers(key), Problem(403, "workspace_archived"))
        limited = self._count(key)
        rate_headers = self.rate_headers(key)
        if limited is not None:
            return Verdict(rate_headers, limited)
        refusal = self._fault(route.name) or _permission(route, key)
        return Verdict(rate_headers, refusal)

    def delay_s(self, route_name: str) -> float:
        """How long to wait before answering: the configured latency and any latency faults."""
        injected = sum(r.seconds for r in self._rules(route_name) if r.kind == "latency")
        return self.config.latency_ms / 1000.0 + injected

    def count_latency(self, route_name: str) -> None:
        """Count a request slowed by a latency fault (the configured latency is no fault)."""
        if any(r.kind == "latency" for r in self._rules(route_name)):
            self.injected["latency"] += 1

    def rate_headers(self, key: KeyState | None) -> Headers:
        """X-RateLimit-* of the key's window as it stands (nothing counted)."""
        if key is None:
            return self._anonymous_headers()
        now = self.clock.now()
        self._prune(key, now)
        limit = self._limit_for(key)
        oldest = key.window[0] if key.window else now
        reset_ms = math.ceil((oldest + self.config.window_s) * 1000)
        return [
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(max(0, limit - len(key.window)))),
            ("X-RateLimit-Reset", str(reset_ms)),
        ]

    def after_endpoint(self, route_name: str, response: SandboxResponse) -> SandboxResponse:
        """A fault that strikes after the endpoint ran: its effects stay, its answer is lost."""
        for rule in self._rules(route_name):
            if rule.kind not in ("drop", "truncate", "html"):
                continue
            if self._fault_rng.random() >= rule.probability:
                continue
            self.injected[rule.kind] += 1
            if rule.kind == "drop":
                return SandboxResponse(response.status, response.headers, b"", drop=True)
            if rule.kind == "truncate":
                half = response.body[: len(response.body) // 2]
                return SandboxResponse(response.status, response.headers, half)
            headers = tuple(
                (k, "text/html; charset=utf-8" if k == "Content-Type" else v)
                for k, v in response.headers
            )
            return SandboxResponse(200, headers, _HTML_PAGE)
        return response

    # rate limits --------------------------------------------------------------------------

    def _anonymous_headers(self) -> Headers:
        # No key, no bucket: the plan's limit, untouched, resetting now (documented choice).
        limit = self.config.effective_rate_limit
        now_ms = int(self.clock.now() * 1000)
        return [
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(limit)),
            ("X-RateLimit-Reset", str(now_ms)),
        ]

    def _limit_for(self, key: KeyState) -> int:
        if self.config.rate_limit is not None:
            return self.config.rate_limit
        return PLAN_RATE_LIMITS[key.plan]

    def _prune(self, key: KeyState, now: float) -> None:
        horizon = now - self.config.window_s
        window = key.window
        while window and window[0] <= horizon:
            window.popleft()

    def _count(self, key: KeyState) -> Problem | None:
        """Count the request in the key's window, or the 429 if the window is full."""
        now = self.clock.now()
        self._prune(key, now)
        if len(key.window) < self._limit_for(key):
            key.window.append(now)
            return None
        wait = max(0.0, key.window[0] + self.config.window_s - now)
        return self._too_many(math.ceil(wait))

    def _too_many(self, retry_after: int) -> Problem:
        if self.config.retry_after_zero:
            retry_after = 0
        details = {"retry_after": retry_after} if self.config.retry_after_in_body else {}
        problem = Problem(429, "rate_limit_exceeded", details)
        if self.config.retry_after_header:
            problem.extra_headers.append(("Retry-After", str(retry_after)))
        return problem

    # faults -------------------------------------------------------------------------------

    def _rules(self, route_name: str) -> list[FaultRule]:
        spec = self.config.faults
        return [] if spec is None else [r for r in spec.rules if r.applies_to(route_name)]

    def _fault(self, route_name: str) -> Problem | None:
        """A fault injected before the endpoint runs (5xx, 429 bursts)."""
        if self._burst_left > 0:
            self._burst_left -= 1
            self.injected["429"] += 1
            return self._too_many(1)
        for rule in self._rules(route_name):
            if rule.kind not in ("5xx", "429"):
                continue
            if self._fault_rng.random() >= rule.probability:
                continue
            self.injected[rule.kind] += 1
            if rule.kind == "429":
                self._burst_left = rule.burst - 1
                return self._too_many(1)
            return Problem(500, "internal_error")
        return None


def _permission(route: Route, key: KeyState) -> Problem | None:
    """The 403 if the key lacks the route's scope or its plan lacks the route's feature."""
    if route.scope not in key.scopes:
        details = {"required": [route.scope], "granted": sorted(key.scopes)}
        return Problem(403, "insufficient_scopes", details)
    if route.feature is not None and route.feature not in PLAN_FEATURES[key.plan]:
        return Problem(403, "feature_not_available", {"feature": route.feature})
    return None
