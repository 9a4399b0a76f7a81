"""IozenClient: the nine ioZen API v1 endpoints over one httpx.Client, typed records and errors.

One request goes: rate budget (wait for a slot) -> send -> learn from the ``X-RateLimit-*``
headers -> read the envelope -> return, or retry by the policy, or raise from the error tree.
What is retried:

- 429 ``rate_limit_exceeded``: always (the server refused it, so nothing happened), after the
  server's hinted wait; the whole budget pauses meanwhile.
- 5xx, timeouts, dropped connections and 2xx bodies that are not the JSON envelope: only when a
  repeat cannot do anything twice, i.e. GET, DELETE, or a POST carrying an ``Idempotency-Key``.
  A connection that was never opened (refused, connect timeout) is safe to retry for any method.
- Nothing else: 4xx answers (``idempotency_conflict``, ``plan_limit_exceeded``, a rejected
  cursor, ...) are raised at once.

Share one client between threads (one per stream); all of them draw on one rate budget.

The API key lives only in the httpx client's default headers (httpx masks it in reprs); errors,
logs and reprs are built from the method, path, status and request id alone.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from iozen_etl import __version__
from iozen_etl.api.errors import (
    ERRORS_BY_CODE,
    ApiError,
    BodyTooLarge,
    IozenError,
    MalformedResponse,
    TransportError,
    WaitCeilingReached,
)
from iozen_etl.api.models import (
    CreatedSubmission,
    IntakeBot,
    Page,
    SchemaItem,
    Submission,
    Webhook,
    WireFormatError,
    listed_submission_parser,
    parse_created_submission,
    parse_intake_bot,
    parse_schema,
    parse_submission,
    parse_webhook,
)
from iozen_etl.api.paging import PAGE_SIZE, Ordered, build_page, iter_pages
from iozen_etl.api.ratelimit import RateBudget, shared_budget
from iozen_etl.api.retry import RetryPolicy
from iozen_etl.api.stats import ClientStats
from iozen_etl.settings import DEFAULT_BASE_URL

MAX_BODY_BYTES = 1_048_576
USER_AGENT = f"iozen-etl/{__version__}"

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT", bound=Ordered)
T = TypeVar("T")


@dataclass(frozen=True)
class _Answer:
    """A successful response: status, the envelope's ``data`` (None for 204) and its headers."""

    status: int
    data: Mapping[str, Any] | None
    headers: httpx.Headers
    request_id: str | None


@dataclass(frozen=True)
class _Listed:
    """A list answer read off the wire: its envelope data, not yet parsed into records."""

    answer: _Answer
    path: str
    items_key: str
    raw_items: list[Any]
    has_more: bool
    next_cursor: str | None

    @property
    def request_id(self) -> str | None:
        return self.answer.request_id


@dataclass(frozen=True)
class _Failure:
    """A failed attempt: the error to raise, whether to retry it, and after how long."""

    error: IozenError
    kind: str
    retryable: bool
    wait: float


class IozenClient:
    """A client for one API key; share one instance between threads."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        budget: RateBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("an ioZen API key is required")
        if not api_key.strip().isascii() or not api_key.strip().isprintable():
            # Said without the key: httpx's own encoding error would quote part of it.
            raise ValueError("the API key holds characters that cannot go in an HTTP header")
        self.base_url = base_url.rstrip("/")
        self.stats = ClientStats()
        self._policy = retry or RetryPolicy()
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._rng = rng
        self._jitter = rng or random.Random()
        if budget is None:
            # A client on injected time is a test: it must not share process-wide state.
            if clock is time.monotonic and sleep is time.sleep:
                budget = shared_budget(api_key, self.base_url)
            else:
                budget = RateBudget(clock=clock, wall_clock=wall_clock, sleep=sleep)
        self.budget = budget
        self._schema_cache: tuple[Any, tuple[SchemaItem, ...]] | None = None
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            headers={
                "Authorization": f"Bearer {api_key.strip()}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
        )

    def __repr__(self) -> str:
        return f"IozenClient(base_url={self.base_url!r})"

    def __enter__(self) -> IozenClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- intake bots ---------------------------------------------------------------------------

    def list_intake_bots_page(
        self, cursor: str | None = None, limit: int = PAGE_SIZE
    ) -> Page[IntakeBot]:
        """One page of intake bots (summaries, without schema)."""
        listed = self._fetch_list("/intake-bots", "intake_bots", cursor, limit)
        return self._build_page(listed, _bot_summary, cursor)

    def iter_intake_bot_pages(self, resume_point: str | None = None) -> Iterator[Page[IntakeBot]]:
        """Pages of intake bots from ``resume_point`` to the end."""
        return self._iter_pages("/intake-bots", "intake_bots", _bot_summary, resume_point)

    def get_intake_bot(self, bot_id: str) -> IntakeBot:
        """One intake bot with its schema (either documented shape)."""
        path = f"/intake-bots/{_segment(bot_id)}"
        answer = self._call("GET", path)
        return self._parse(answer, "GET", path, lambda data: parse_intake_bot(data, detail=True))

    # -- submissions ---------------------------------------------------------------------------

    def list_submissions_page(
        self, bot_id: str, cursor: str | None = None, limit: int = PAGE_SIZE
    ) -> Page[Submission]:
        """One page of a bot's submissions; ``Page.schema`` holds the list's sibling schema."""
        path = f"/intake-bots/{_segment(bot_id)}/submissions"
        listed = self._fetch_list(path, "submissions", cursor, limit)
        parse = listed_submission_parser(bot_id)
        return self._build_page(listed, parse, cursor, with_schema=True)

    def iter_submission_pages(
        self, bot_id: str, resume_point: str | None = None
    ) -> Iterator[Page[Submission]]:
        """Pages of a bot's submissions from ``resume_point`` to the end."""
        path = f"/intake-bots/{_segment(bot_id)}/submissions"
        parse = listed_submission_parser(bot_id)
        return self._iter_pages(path, "submissions", parse, resume_point, with_schema=True)

    def get_submission(self, bot_id: str, submission_id: str) -> Submission:
        """One submission with its messages."""
        path = f"/intake-bots/{_segment(bot_id)}/submissions/{_segment(submission_id)}"
        answer = self._call("GET", path)
        return self._parse(
            answer, "GET", path, lambda data: parse_submission(data, bot_id=bot_id, detail=True)
        )

    def create_submission(
        self,
        bot_id: str,
        data: Mapping[str, Any],
        *,
        status: str | None = None,
        is_test: bool | None = None,
        idempotency_key: str | None = None,
    ) -> CreatedSubmission:
        """POST a submission; always idempotent (the caller's key, or one fixed for all retries)."""
        path = f"/intake-bots/{_segment(bot_id)}/submissions"
        body: dict[str, Any] = {"data": dict(data)}
        if status is not None:
            body["status"] = status
        if is_test is not None:
            body["is_test"] = is_test
        key = idempotency_key or self.new_idempotency_key()
        answer = self._call("POST", path, body=body, idempotency_key=key)
        replayed = answer.headers.get("idempotent-replayed", "").lower() == "true"
        return self._parse(
            answer,
            "POST",
            path,
            lambda payload: parse_created_submission(
                payload, request_id=answer.request_id, status_code=answer.status, replayed=replayed
            ),
        )

    def new_idempotency_key(self) -> str:
        """A fresh random Idempotency-Key (from the injected random source when there is one)."""
        if self._rng is None:
            return f"iozen-etl-{uuid.uuid4()}"
        return f"iozen-etl-{uuid.UUID(int=self._rng.getrandbits(128), version=4)}"

    # -- webhooks ------------------------------------------------------------------------------

    def list_webhooks_page(
        self, cursor: str | None = None, limit: int = PAGE_SIZE
    ) -> Page[Webhook]:
        """One page of webhook endpoints (never with their secrets)."""
        listed = self._fetch_list("/webhooks", "webhooks", cursor, limit)
        return self._build_page(listed, parse_webhook, cursor)

    def iter_webhook_pages(self, resume_point: str | None = None) -> Iterator[Page[Webhook]]:
        """Pages of webhook endpoints from ``resume_point`` to the end."""
        return self._iter_pages("/webhooks", "webhooks", parse_webhook, resume_point)

    def get_webhook(self, webhook_id: str) -> Webhook:
        """One webhook endpoint."""
        path = f"/webhooks/{_segment(webhook_id)}"
        return self._parse(self._call("GET", path), "GET", path, parse_webhook)

    def create_webhook(
        self,
        url: str,
        events: Sequence[str],
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> Webhook:
        """Register an endpoint; ``.secret`` is only ever returned here. Retried only with a key."""
        body: dict[str, Any] = {"url": url, "events": list(events)}
        if description is not None:
            body["description"] = description
        answer = self._call("POST", "/webhooks", body=body, idempotency_key=idempotency_key)
        return self._parse(answer, "POST", "/webhooks", parse_webhook)

    def delete_webhook(self, webhook_id: str) -> None:
        """Delete an endpoint; a 200 envelope and a bare 204 both mean done."""
        self._call("DELETE", f"/webhooks/{_segment(webhook_id)}", expect_body=False)

    # -- the request machinery -----------------------------------------------------------------

    def _iter_pages(
        self,
        path: str,
        items_key: str,
        parse: Callable[[Any], ItemT],
        resume_point: str | None,
        *,
        with_schema: bool = False,
    ) -> Iterator[Page[ItemT]]:
        return iter_pages(
            lambda cursor: self._fetch_list(path, items_key, cursor, PAGE_SIZE),
            lambda listed, cursor, previous: self._build_page(
                listed, parse, cursor, previous, with_schema=with_schema
            ),
            resume_point,
            path=path,
        )

    def _fetch_list(self, path: str, items_key: str, cursor: str | None, limit: int) -> _Listed:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        answer = self._call("GET", path, params=params)
        data = answer.data or {}
        raw_items = data.get(items_key)
        pagination = data.get("pagination")
        if not isinstance(raw_items, list) or not isinstance(pagination, Mapping):
            raise _malformed(f"list answer lacks '{items_key}' or 'pagination'", path, answer)
        next_cursor = pagination.get("next_cursor")
        next_cursor = str(next_cursor) if next_cursor not in (None, "") else None
        has_more = pagination.get("has_more")
        if not isinstance(has_more, bool):
            has_more = next_cursor is not None
        return _Listed(answer, path, items_key, raw_items, has_more, next_cursor)

    def _build_page(
        self,
        listed: _Listed,
        parse: Callable[[Any], ItemT],
        cursor: str | None,
        previous: ItemT | None = None,
        *,
        with_schema: bool = False,
    ) -> Page[ItemT]:
        try:
            items = [parse(raw) for raw in listed.raw_items]
        except WireFormatError:
            raise self._malformed_item(listed, parse) from None
        schema = None
        raw_schema = listed.answer.data.get("schema") if listed.answer.data else None
        if with_schema and raw_schema is not None:
            schema = self._list_schema(raw_schema, listed)
        return build_page(
            items,
            has_more=listed.has_more,
            next_cursor=listed.next_cursor,
            cursor=cursor,
            request_id=listed.request_id,
            schema=schema,
            previous=previous,
        )

    @staticmethod
    def _malformed_item(listed: _Listed, parse: Callable[[Any], object]) -> MalformedResponse:
        """The error naming the first item of a page that cannot be read (found only on failure)."""
        for position, raw in enumerate(listed.raw_items):
            try:
                parse(raw)
            except WireFormatError as exc:
                problem = f"{listed.items_key}[{position}]: {exc}"
                return _malformed(problem, listed.path, listed.answer)
        return _malformed(f"{listed.items_key}: unreadable item", listed.path, listed.answer)

    def _list_schema(self, raw: Any, listed: _Listed) -> tuple[SchemaItem, ...]:
        # Every page of a bot repeats the same schema: parse it once per change.
        cached = self._schema_cache
        if cached is not None and cached[0] == raw:
            return cached[1]
        try:
            schema, _ = parse_schema(raw)
        except WireFormatError as exc:
            raise _malformed(str(exc), listed.path, listed.answer) from None
        self._schema_cache = (raw, schema)
        return schema

    def _parse(self, answer: _Answer, method: str, path: str, parse: Callable[[Any], T]) -> T:
        try:
            return parse(answer.data)
        except WireFormatError as exc:
            raise MalformedResponse(
                str(exc),
                method=method,
                path=path,
                status=answer.status,
                request_id=answer.request_id,
            ) from None

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        expect_body: bool = True,
    ) -> _Answer:
        # The whole URL as one string: httpx's own merging of a base URL and a params dict cost
        # ~0.15 ms a request, which is 3% of reading a page of submissions.
        url = self.base_url + path
        if params:
            url += "?" + "&".join(
                f"{name}={quote(str(value), safe='')}" for name, value in params.items()
            )
        headers: dict[str, str] | None = None
        content: bytes | None = None
        if body is not None:
            content = _encode(body, method, path)
            headers = {"Content-Type": "application/json"}
        if idempotency_key is not None:
            headers = {**(headers or {}), "Idempotency-Key": idempotency_key}
        # A repeat is harmless for GET and DELETE, and for a POST the server can deduplicate.
        repeatable = method in ("GET", "DELETE") or idempotency_key is not None
        waited = 0.0
        failures = 0  # failures other than 429: max_attempts bounds them
        throttled = 0  # 429s: the server said when to come back, so only the ceiling bounds them
        while True:
            attempt = failures + throttled
            ticket, paced = self.budget.acquire()
            self.stats.count_request(paced)
            try:
                response = self._http.request(method, url, content=content, headers=headers)
            except httpx.RequestError as exc:
                self.budget.release(ticket)
                failure = self._transport_failure(exc, method, path, attempt, repeatable)
            except BaseException:
                self.budget.release(ticket)
                raise
            else:
                refused = response.status_code == 429
                self.budget.observe(ticket, response.headers, counted=not refused)
                outcome = self._classify(response, method, path, attempt, repeatable, expect_body)
                if isinstance(outcome, _Answer):
                    return outcome
                failure = outcome
                if failure.kind == "rate_limited":
                    self.budget.refused(failure.wait)
            if failure.kind == "rate_limited":
                throttled += 1
            else:
                failures += 1
            last_attempt = (
                failures >= self._policy.max_attempts or throttled > self._policy.max_throttled
            )
            if not failure.retryable or last_attempt:
                self.stats.count_failure(failure.kind)
                raise failure.error
            if waited + failure.wait > self._policy.max_total_wait:
                self.stats.count_failure(failure.kind)
                raise WaitCeilingReached(
                    f"waiting {failure.wait:.1f}s more would pass the retry ceiling of "
                    f"{self._policy.max_total_wait:.0f}s ({waited:.1f}s waited); "
                    f"last failure: {failure.error.message}",
                    waited=waited,
                    next_wait=failure.wait,
                    method=method,
                    path=path,
                    status=failure.error.status,
                    request_id=failure.error.request_id,
                ) from failure.error
            logger.info(
                "retrying %s %s in %.2fs after %s (status %s, request id %s)",
                method,
                path,
                failure.wait,
                failure.kind,
                failure.error.status,
                failure.error.request_id,
            )
            self.stats.count_retry(failure.kind, failure.wait)
            self._sleep(failure.wait)
            waited += failure.wait

    def _transport_failure(
        self, exc: httpx.RequestError, method: str, path: str, attempt: int, repeatable: bool
    ) -> _Failure:
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
        # Nothing reached the server when the connection was never opened.
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        error = TransportError(f"{kind} ({type(exc).__name__}: {exc})", method=method, path=path)
        # A base URL httpx cannot use fails the same way every time.
        retryable = (repeatable or never_sent) and not isinstance(exc, httpx.UnsupportedProtocol)
        return _Failure(error, kind, retryable, self._policy.backoff(attempt, self._jitter))

    def _classify(
        self,
        response: httpx.Response,
        method: str,
        path: str,
        attempt: int,
        repeatable: bool,
        expect_body: bool,
    ) -> _Answer | _Failure:
        status = response.status_code
        request_id = response.headers.get("x-request-id")
        where: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": status,
            "request_id": request_id,
        }
        envelope, problem = _read_envelope(response)
        if 200 <= status < 300:
            if not expect_body:
                return _Answer(status, None, response.headers, request_id)
            if envelope is not None and envelope["success"] is True:
                data = envelope.get("data")
                if isinstance(data, Mapping):
                    return _Answer(status, data, response.headers, request_id)
                problem = "success envelope without a 'data' object"
            if envelope is None or problem:
                retryable = repeatable and self._policy.retry_malformed
                backoff = self._policy.backoff(attempt, self._jitter)
                malformed = MalformedResponse(f"malformed success body: {problem}", **where)
                return _Failure(malformed, "malformed", retryable, backoff)
        error = _error_from(envelope, problem, where)
        code = error.code if isinstance(error, ApiError) else None
        if status == 429 and code != "plan_limit_exceeded":
            details = error.details if isinstance(error, ApiError) else None
            wait = self._policy.rate_limit_wait(
                attempt,
                self._jitter,
                details=details,
                headers=response.headers,
                now_wall=self._wall_clock(),
            )
            return _Failure(error, "rate_limited", True, wait)
        if status in self._policy.retryable_statuses and status != 429:
            backoff = self._policy.backoff(attempt, self._jitter)
            return _Failure(error, f"http_{status}", repeatable, backoff)
        return _Failure(error, code or f"http_{status}", False, 0.0)


def _bot_summary(raw: Any) -> IntakeBot:
    return parse_intake_bot(raw, detail=False)


def _malformed(problem: str, path: str, answer: _Answer) -> MalformedResponse:
    return MalformedResponse(
        problem, method="GET", path=path, status=answer.status, request_id=answer.request_id
    )


def _error_from(
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


def _read_envelope(response: httpx.Response) -> tuple[Mapping[str, Any] | None, str | None]:
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


def _encode(body: Mapping[str, Any], method: str, path: str) -> bytes:
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


def _segment(value: str) -> str:
    """An id as one path segment: ids are opaque, so slashes and the like are escaped."""
    if not isinstance(value, str) or not value:
        raise ValueError("an id must be a non-empty string")
    return quote(value, safe="")
