"""The sandbox: ioZen API v1 over a ``World``, as a WSGI app and as plain Python methods.

Every answer is a documented envelope. Checks run in this order: route (404), then the gate's
(``gate.py``): key (401), archived workspace (403), rate limit (429, not counted), injected
faults, scopes (403), plan features (403); then the endpoint itself (400, 404, 409, 429 plan
limit). ``/_sandbox/...`` holds the sandbox-only routes (``admin.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from iozen_etl.sandbox.admin import admin_response
from iozen_etl.sandbox.config import SandboxConfig
from iozen_etl.sandbox.control import WorldControl
from iozen_etl.sandbox.endpoints import Endpoints
from iozen_etl.sandbox.gate import Gate, Headers
from iozen_etl.sandbox.idempotency import IdempotencyStore
from iozen_etl.sandbox.protocol import (
    Outcome,
    Problem,
    SandboxRequest,
    SandboxResponse,
    bearer,
    new_request_id,
    parse_query,
    problem_response,
    reason,
)
from iozen_etl.sandbox.routes import Match, Route, match_route


class Sandbox(WorldControl):
    """A seeded ioZen workspace answering API v1; see the module docstring for the check order."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        webhook_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(config, webhook_transport)
        self._gate = Gate(self.config, self.clock)
        self._endpoints = Endpoints(self._world, self._wire, self._outbox)
        self._idempotency = IdempotencyStore(self.clock)
        self._sleep = sleep

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterator[bytes]:
        """The WSGI app."""
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        request = SandboxRequest(
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO", "/"),
            environ.get("QUERY_STRING", ""),
            headers,
            body,
        )
        response = self.handle(request)
        if response.drop:
            # httpx.WSGITransport re-raises app exceptions: the client sees a dropped connection.
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        start_response(f"{response.status} {reason(response.status)}", list(response.headers))
        return iter([response.body])

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Answer one request (thread-safe)."""
        request_id = new_request_id()
        try:
            if request.path == "/_sandbox" or request.path.startswith("/_sandbox/"):
                with self._lock:
                    self._counts[("admin", request.method)] += 1
                return admin_response(self, request, request_id)
            return self._api(request, request_id)
        except Exception:  # a bug must still answer with the envelope, never a stack trace
            return problem_response(Problem(500, "internal_error"), request_id, [])

    def _api(self, request: SandboxRequest, request_id: str) -> SandboxResponse:
        match = match_route(request.method, request.path)
        delay = self._gate.delay_s(match.name)
        if delay > 0:
            self._sleep(delay)
        with self._lock:
            self._counts[(match.name, request.method)] += 1
            if delay > 0:
                self._gate.count_latency(match.name)
            key_name = bearer(request.headers.get("authorization", ""))
            key = self._world.keys.get(key_name) if key_name else None
            if match.route is None:
                refusal = _no_route(request, match)
                return problem_response(refusal, request_id, self._gate.rate_headers(key))
            verdict = self._gate.admit(match.route, key)
            if verdict.refusal is not None:
                return problem_response(verdict.refusal, request_id, verdict.rate_headers)
            try:
                outcome = self._run(match.route, match.ids, request, key_name)
            except Problem as problem:
                return problem_response(problem, request_id, verdict.rate_headers)
            response = self._respond(outcome, request_id, verdict.rate_headers)
            return self._gate.after_endpoint(match.route.name, response)

    def faults_injected(self, kind: str | None = None) -> int:
        """Answers an injected fault changed so far: of one kind (``config.FAULT_KINDS``) or all."""
        with self._lock:
            counts = self._gate.injected
            return counts[kind] if kind is not None else sum(counts.values())

    def _run(self, route: Route, ids: list[str], request: SandboxRequest, key_name: str) -> Outcome:
        """The route's handler on the query, or on the body through the idempotency store."""
        if route.method == "POST":
            return self._idempotency.run(
                request, key_name, lambda body: route.handler(self._endpoints, ids, body)
            )
        return route.handler(self._endpoints, ids, parse_query(request.query))

    def _respond(self, outcome: Outcome, request_id: str, rate_headers: Headers) -> SandboxResponse:
        headers = [("X-Request-Id", request_id), *rate_headers, *outcome.headers]
        if outcome.status != 204:
            headers.insert(0, ("Content-Type", "application/json"))
        return SandboxResponse(outcome.status, tuple(headers), self._wire.times(outcome.body))


def _no_route(request: SandboxRequest, match: Match) -> Problem:
    problem = Problem(404, "resource_not_found", {"resource": "route"})
    if match.other_method:
        problem.message = f"No {request.method} handler for {request.path}"
    return problem
