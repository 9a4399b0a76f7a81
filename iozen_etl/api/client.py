"""IozenClient: the nine ioZen API v1 endpoints over one httpx.Client, typed records and errors.

Each request goes through ``exchange.Exchange``: rate budget (wait for a slot) -> send -> learn
from the ``X-RateLimit-*`` headers -> read the envelope -> return, or retry by the policy, or
raise from the error tree. What is retried:

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

import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from iozen_etl import __version__
from iozen_etl.api.errors import MalformedResponse
from iozen_etl.api.exchange import Answer, Exchange, build_request
from iozen_etl.api.models import (
    CreatedSubmission,
    IntakeBot,
    Page,
    SchemaItem,
    Submission,
    Webhook,
)
from iozen_etl.api.paging import PAGE_SIZE, Ordered, build_page, iter_pages
from iozen_etl.api.parsing import (
    WireFormatError,
    listed_submission_parser,
    parse_created_submission,
    parse_intake_bot,
    parse_schema,
    parse_submission,
    parse_webhook,
)
from iozen_etl.api.ratelimit import RateBudget, shared_budget
from iozen_etl.api.retry import RetryPolicy
from iozen_etl.api.stats import ClientStats
from iozen_etl.settings import DEFAULT_BASE_URL

USER_AGENT = f"iozen-etl/{__version__}"

ItemT = TypeVar("ItemT", bound=Ordered)
T = TypeVar("T")


@dataclass(frozen=True)
class _Listed:
    """A list answer read off the wire: its envelope data, not yet parsed into records."""

    answer: Answer
    path: str
    items_key: str
    raw_items: list[Any]
    has_more: bool
    next_cursor: str | None

    @property
    def request_id(self) -> str | None:
        return self.answer.request_id


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
        self._rng = rng
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
        self._exchange = Exchange(
            self._http,
            budget,
            retry or RetryPolicy(),
            self.stats,
            wall_clock=wall_clock,
            sleep=sleep,
            jitter=rng or random.Random(),
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

    def _parse(self, answer: Answer, method: str, path: str, parse: Callable[[Any], T]) -> T:
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
    ) -> Answer:
        request = build_request(
            self.base_url,
            method,
            path,
            params=params,
            body=body,
            idempotency_key=idempotency_key,
            expect_body=expect_body,
        )
        return self._exchange.call(request)


def _bot_summary(raw: Any) -> IntakeBot:
    return parse_intake_bot(raw, detail=False)


def _malformed(problem: str, path: str, answer: Answer) -> MalformedResponse:
    return MalformedResponse(
        problem, method="GET", path=path, status=answer.status, request_id=answer.request_id
    )


def _segment(value: str) -> str:
    """An id as one path segment: ids are opaque, so slashes and the like are escaped.

    An id of dots alone (``.``, ``..``) is escaped too: quote() leaves dots as they are, and the
    URL would then drop or climb a segment, asking for another resource than this id's.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("an id must be a non-empty string")
    if value.strip(".") == "":
        return "%2E" * len(value)
    return quote(value, safe="")
