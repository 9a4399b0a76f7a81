"""Idempotent POSTs: the first answer to a key is stored for 24 hours and replayed.

A key is scoped to (API key, method, path, Idempotency-Key); reused with a different body it is
a 409. Successes are stored, and so are 400s and 404s (the same request would fail the same
way); other errors (a 429 plan limit, say) are not, so a retry runs the endpoint afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iozen_etl.sandbox.clock import SandboxClock
from iozen_etl.sandbox.protocol import (
    Outcome,
    Problem,
    SandboxRequest,
    body_fingerprint,
    invalid,
    json_body,
    problem_body,
)

IDEMPOTENCY_TTL_S = 86_400.0
MAX_IDEMPOTENCY_KEY = 255
_PRUNE_ABOVE = 100_000  # stored answers; then the expired ones are dropped

Scope = tuple[str, str, str, str]


@dataclass
class _Stored:
    fingerprint: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expires: float


class IdempotencyStore:
    """Stored answers by key scope, expiring on the sandbox clock."""

    def __init__(self, clock: SandboxClock) -> None:
        self._clock = clock
        self._stored: dict[Scope, _Stored] = {}

    def run(
        self, request: SandboxRequest, key_name: str, handler: Callable[[Any], Outcome]
    ) -> Outcome:
        """``handler`` on the JSON body, or the stored answer if this key was used before."""
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key is not None and len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise invalid(["headers", "Idempotency-Key"], "At most 255 characters", "too_big")
        if not idempotency_key:
            return handler(json_body(request.body))
        scope = (key_name, request.method, request.path, idempotency_key)
        fingerprint = body_fingerprint(request.body)
        stored = self._lookup(scope)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise Problem(409, "idempotency_conflict")
            headers = [*stored.headers, ("Idempotent-Replayed", "true")]
            return Outcome(stored.status, stored.body, headers)
        return self._run_and_store(scope, fingerprint, request.body, handler)

    def _lookup(self, scope: Scope) -> _Stored | None:
        stored = self._stored.get(scope)
        if stored is not None and stored.expires <= self._clock.now():
            del self._stored[scope]
            return None
        return stored

    def _run_and_store(
        self, scope: Scope, fingerprint: str, body: bytes, handler: Callable[[Any], Outcome]
    ) -> Outcome:
        expires = self._clock.now() + IDEMPOTENCY_TTL_S
        try:
            outcome = handler(json_body(body))
        except Problem as problem:
            if problem.status in (400, 404):  # the same request would fail the same way
                self._store(
                    scope, _Stored(fingerprint, problem.status, (), problem_body(problem), expires)
                )
            raise
        stored = _Stored(fingerprint, outcome.status, tuple(outcome.headers), outcome.body, expires)
        self._store(scope, stored)
        return outcome

    def _store(self, scope: Scope, stored: _Stored) -> None:
        if len(self._stored) > _PRUNE_ABOVE:
            now = self._clock.now()
            self._stored = {k: v for k, v in self._stored.items() if v.expires > now}
        self._stored[scope] = stored
