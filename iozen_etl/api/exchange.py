"""One request to the API, retried by the policy: the request loop under ``IozenClient``.

An attempt goes: rate budget (wait for a slot) -> send -> learn from the ``X-RateLimit-*``
headers -> read the envelope -> an ``Answer``, or a ``Failure`` saying whether a repeat may help
and after how long. The loop retries a failure until the policy's attempts or its total-wait
ceiling run out (the client's docstring says what is retried and why).

Errors and logs are built from the method, path, status and request id alone.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from iozen_etl.api.errors import (
    ERRORS_BY_CODE,
    ApiError,
    BodyTooLarge,
    IozenError,
    MalformedResponse,
    TransportError,
    WaitCeilingReached,
)
from iozen_etl.api.ratelimit import RateBudget
from iozen_etl.api.retry import RetryPolicy
from iozen_etl.api.stats import ClientStats

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_048_576


@dataclass(frozen=True)
class Answer:
    """A successful response: status, the envelope's ``data`` (None for 204) and its headers."""

    status: int
    data: Mapping[str, Any] | None
    headers: httpx.Headers
    request_id: str | None


@dataclass(frozen=True)
class Failure:
    """A failed attempt: the error to raise, whether to retry it, and after how long."""

    error: IozenError
    kind: str
    retryable: bool
    wait: float


@dataclass(frozen=True)
class Request:
    """What every attempt of one call sends, and whether sending it twice is harmless."""

    method: str
    path: str
    url: str
    content: bytes | None
    headers: dict[str, str] | None
    repeatable: bool
    expect_body: bool


def build_request(
    base_url: str,
    method: str,
    path: str,
    *,
    params: Mapping[str, str | int] | None = None,
    body: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    expect_body: bool = True,
) -> Request:
    """One call's request: the URL with its query, the body as JSON and its headers, and whether
    it may be sent again (GET, DELETE, or a POST carrying an ``Idempotency-Key``)."""
    # The whole URL as one string: httpx's own merging of a base URL and a params dict costs
    # more than this on every request, which a page of submissions notices.
    url = base_url + path
    if params:
        url += "?" + "&".join(
            f"{name}={quote(str(value), safe='')}" for name, value in params.items()
        )
    content: bytes | None = None
    headers: dict[str, str] | None = None
    if body is not None:
        content = encode_body(body, method, path)
        headers = {"Content-Type": "application/json"}
    if idempotency_key is not None:
        headers = {**(headers or {}), "Idempotency-Key": idempotency_key}
    # A repeat is harmless for GET and DELETE, and for a POST the server can deduplicate.
    repeatable = method in ("GET", "DELETE") or idempotency_key is not None
    return Request(method, path, url, content, headers, repeatable, expect_body)


def encode_body(body: Mapping[str, Any], method: str, path: str) -> bytes:
    """The body as compact JSON; ``BodyTooLarge`` (nothing sent) past the API's limit."""
    try:
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{method} {path}: the body is not JSON-serialisable ({exc})") from None
    if len(content) > MAX_BODY_BYTES:
        raise BodyTooLarge(
            f"request body of {len(content):,} bytes is over the {MAX_BODY_BYTES:,}-byte limit; "
            "not sent",
            size=len(content),
            limit=MAX_BODY_BYTES,
            method=method,
            path=path,
        )
    return content


class Exchange:
    """Sends requests over one ``httpx.Client`` within one rate budget, retrying by the policy."""

    def __init__(
        self,
        http: httpx.Client,
        budget: RateBudget,
        policy: RetryPolicy,
        stats: ClientStats,
        *,
        wall_clock: Callable[[], float],
        sleep: Callable[[float], None],
        jitter: random.Random,
    ) -> None:
        self.http = http
        self.budget = budget
        self.policy = policy
        self.stats = stats
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._jitter = jitter

    def call(self, request: Request) -> Answer:
        """Send ``request`` until it succeeds; raise its error once retrying cannot help."""
        waited = 0.0
        failures = 0  # failures other than 429: max_attempts bounds them
        throttled = 0  # 429s: the server said when to come back, so only the ceiling bounds them
        while True:
            outcome = self._attempt(request, failures + throttled)
            if isinstance(outcome, Answer):
                return outcome
            if outcome.kind == "rate_limited":
                throttled += 1
            else:
                failures += 1
            last_attempt = (
                failures >= self.policy.max_attempts or throttled > self.policy.max_throttled
            )
            self._give_up_if_final(request, outcome, waited, last_attempt=last_attempt)
            self._wait_before_retry(request, outcome)
            waited += outcome.wait

    def _attempt(self, request: Request, attempt: int) -> Answer | Failure:
        """One send within the budget: the answer, or why it failed."""
        ticket, paced = self.budget.acquire()
        self.stats.count_request(paced)
        try:
            response = self.http.request(
                request.method, request.url, content=request.content, headers=request.headers
            )
        except httpx.RequestError as exc:
            self.budget.release(ticket)
            return self._transport_failure(exc, request, attempt)
        except BaseException:
            self.budget.release(ticket)
            raise
        refused = response.status_code == 429
        self.budget.observe(ticket, response.headers, counted=not refused)
        outcome = self._classify(response, request, attempt)
        if isinstance(outcome, Failure) and outcome.kind == "rate_limited":
            self.budget.refused(outcome.wait)
        return outcome

    def _give_up_if_final(
        self, request: Request, failure: Failure, waited: float, *, last_attempt: bool
    ) -> None:
        """Raise the failure's error when it may not be retried, or its wait would pass the
        policy's total-wait ceiling (as ``WaitCeilingReached``, so the caller can stop cleanly)."""
        if not failure.retryable or last_attempt:
            self.stats.count_failure(failure.kind)
            raise failure.error
        if waited + failure.wait > self.policy.max_total_wait:
            self.stats.count_failure(failure.kind)
            raise WaitCeilingReached(
                f"waiting {failure.wait:.1f}s more would pass the retry ceiling of "
                f"{self.policy.max_total_wait:.0f}s ({waited:.1f}s waited); "
                f"last failure: {failure.error.message}",
                waited=waited,
                next_wait=failure.wait,
                method=request.method,
                path=request.path,
                status=failure.error.status,
                request_id=failure.error.request_id,
            ) from failure.error

    def _wait_before_retry(self, request: Request, failure: Failure) -> None:
        logger.info(
            "retrying %s %s in %.2fs after %s (status %s, request id %s)",
            request.method,
            request.path,
            failure.wait,
            failure.kind,
            failure.error.status,
            failure.error.request_id,
        )
        self.stats.count_retry(failure.kind, failure.wait)
        self._sleep(failure.wait)

    def _transport_failure(
        self, exc: httpx.RequestError, request: Request, attempt: int
    ) -> Failure:
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
        # Nothing reached the server when the connection was never opened.
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        error = TransportError(
            f"{kind} ({type(exc).__name__}: {exc})", method=request.method, path=request.path
        )
        # A base URL httpx cannot use fails the same way every time.
        retryable = (request.repeatable or never_sent) and not isinstance(
            exc, httpx.UnsupportedProtocol
        )
        return Failure(error, kind, retryable, self.policy.backoff(attempt, self._jitter))

    def _classify(
        self, response: httpx.Response, request: Request, attempt: int
    ) -> Answer | Failure:
        status = response.status_code
        request_id = response.headers.get("x-request-id")
        where: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "status": status,
            "request_id": request_id,
        }
        envelope, problem = read_envelope(response)
        if 200 <= status < 300:
            if not request.expect_body:
                return Answer(status, None, response.headers, request_id)
            if envelope is not None and envelope["success"] is True:
                data = envelope.get("data")
                if isinstance(data, Mapping):
                    return Answer(status, data, response.headers, request_id)
                problem = "success envelope without a 'data' object"
            if envelope is None or problem:
                retryable = request.repeatable and self.policy.retry_malformed
                backoff = self.policy.backoff(attempt, self._jitter)
                malformed = MalformedResponse(f"malformed success body: {problem}", **where)
                return Failure(malformed, "malformed", retryable, backoff)
        error = error_from(envelope, problem, where)
        code = error.code if isinstance(error, ApiError) else None
        if status == 429 and code != "plan_limit_exceeded":
            details = error.details if isinstance(error, ApiError) else None
            wait = self.policy.rate_limit_wait(
                attempt,
                self._jitter,
                details=details,
                headers=response.headers,
                now_wall=self._wall_clock(),
            )
            return Failure(error, "rate_limited", True, wait)
        if status in self.policy.retryable_statuses and status != 429:
            backoff = self.policy.backoff(attempt, self._jitter)
            return Failure(error, f"http_{status}", request.repeatable, backoff)
        return Failure(error, code or f"http_{status}", False, 0.0)


def error_from(
    envelope: Mapping[str, Any] | None, problem: str | None, where: dict[str, Any]
) -> IozenError:
    """The error an unsuccessful answer stands for: its code's class, or MalformedResponse."""
    error = envelope.get("error") if envelope is not None else None
    if not isinstance(error, Mapping) or not isinstance(error.get("code"), str):
        reason = problem or "an error answer without the error envelope"
        return MalformedResponse(f"unexpected answer: {reason}", **where)
    code = str(error["code"])
    message = error.get("message")
    details = error.get("details")
    cls = ERRORS_BY_CODE.get(code, ApiError)
    return cls(
        str(message) if message else code,
        code=code,
        details=details if isinstance(details, Mapping) else {},
        **where,
    )


_decode_json = msgspec.json.Decoder().decode


def decode_json(content: bytes) -> Any:
    """JSON text -> Python objects, as ``json.loads`` reads it, in C: msgspec builds the same
    objects (big integers included); what it refuses and the standard library reads (NaN, a lone
    surrogate escape, a number beyond a float) goes the standard library's way. Raises ValueError
    when neither can read it."""
    try:
        return _decode_json(content)
    except msgspec.DecodeError:
        return json.loads(content)


def read_envelope(response: httpx.Response) -> tuple[Mapping[str, Any] | None, str | None]:
    """The parsed envelope, or None and what was wrong with the body."""
    content = response.content
    if not content or content.isspace():
        return None, "empty body"
    try:
        body = decode_json(content)
    except ValueError:
        content_type = response.headers.get("content-type", "")
        if "html" in content_type or content.lstrip()[:1] == b"<":
            return None, "an HTML page instead of JSON"
        return None, "invalid or truncated JSON"
    if not isinstance(body, Mapping) or not isinstance(body.get("success"), bool):
        return None, "JSON without the 'success' envelope"
    return body, None
