"""The sandbox: ioZen API v1 over a ``World``, as a WSGI app and as plain Python methods.

Every answer is a documented envelope. Checks run in this order: route (404), key (401),
archived workspace (403), rate limit (429, not counted), injected faults, scopes (403), plan
features (403), then the endpoint itself (400, 404, 409, 429 plan limit). ``/_sandbox/...``
holds the sandbox-only routes that move the world and read its ground truth.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import math
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from iozen_etl.sandbox.admin import admin_response
from iozen_etl.sandbox.clock import SandboxClock
from iozen_etl.sandbox.config import ALL_SCOPES, PLAN_RATE_LIMITS, FaultRule, SandboxConfig
from iozen_etl.sandbox.protocol import (
    Problem,
    SandboxRequest,
    SandboxResponse,
    bearer,
    body_fingerprint,
    invalid,
    json_body,
    new_request_id,
    parse_limit,
    parse_query,
    problem_body,
    reason,
)
from iozen_etl.sandbox.timefmt import iso_ms
from iozen_etl.sandbox.validation import SUBMISSION_STATUSES, validate_submission, validate_webhook
from iozen_etl.sandbox.webhooks import (
    MAX_ATTEMPTS,
    MAX_CONSECUTIVE_FAILS,
    USER_AGENT,
    Delivery,
    DeliveryRecord,
    backoff_s,
    signature,
)
from iozen_etl.sandbox.world import (
    BotState,
    KeyState,
    WebhookState,
    World,
    dumps,
    messages,
)

API_PREFIX = "/api/v1"
IDEMPOTENCY_TTL_S = 86_400.0
MAX_IDEMPOTENCY_KEY = 255

# (method, path segments with None for an id, route name, scope)
ROUTES: tuple[tuple[str, tuple[str | None, ...], str, str], ...] = (
    ("GET", ("intake-bots",), "bots", "read:intake-bots"),
    ("GET", ("intake-bots", None), "bot", "read:intake-bots"),
    ("GET", ("intake-bots", None, "submissions"), "submissions", "read:submissions"),
    ("POST", ("intake-bots", None, "submissions"), "create_submission", "write:intake-bots"),
    ("GET", ("intake-bots", None, "submissions", None), "submission", "read:submissions"),
    ("GET", ("webhooks",), "webhooks", "manage:webhooks"),
    ("POST", ("webhooks",), "create_webhook", "manage:webhooks"),
    ("GET", ("webhooks", None), "webhook", "manage:webhooks"),
    ("DELETE", ("webhooks", None), "delete_webhook", "manage:webhooks"),
)
# docs/decisions.md #24, its variant: the same instants without milliseconds (key-anchored,
# so answers that merely look like times are left alone).
_MS_STAMP = re.compile(
    rb'("(?:created_at|updated_at|last_delivery_at)":")'
    rb'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d{3}Z"'
)
# unknown_extras: keys no client knows, as an additive API change would bring them.
_EXTRA_ITEM_KEYS = {"workspace_id": "ws_sandbox", "x_unreleased": {"tier": 2, "flags": ["beta"]}}
_EXTRA_ITEM_PREFIX = b'{"workspace_id":"ws_sandbox","x_unreleased":{"tier":2,"flags":["beta"]},'
_MYSTERY_ITEM = {
    "id": "mx_1",
    "kind": "mystery",
    "name": "mystery_widget",
    "payload": {"shape": "hexagon"},
}
_HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
)


@dataclass
class _Stored:
    fingerprint: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expires: float


@dataclass
class _Outcome:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def match_route(method: str, path: str) -> tuple[str, str, list[str]] | str | None:
    """(route name, scope, ids) for a known route; "method" if only the method is wrong."""
    if not path.startswith(API_PREFIX + "/"):
        return None
    segments = path[len(API_PREFIX) + 1 :].rstrip("/").split("/")
    if any(segment == "" for segment in segments):
        return None
    wrong_method = False
    for route_method, pattern, name, scope in ROUTES:
        if len(pattern) != len(segments):
            continue
        if all(p is None or p == s for p, s in zip(pattern, segments, strict=True)):
            if route_method == method:
                ids = [s for p, s in zip(pattern, segments, strict=True) if p is None]
                return name, scope, ids
            wrong_method = True
    return "method" if wrong_method else None


class Sandbox:
    """A seeded ioZen workspace answering API v1; see the module docstring for the check order."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        webhook_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.config.validate()
        self.clock = SandboxClock(real_time=self.config.real_time)
        self._lock = threading.RLock()
        self._world = World(self.config, self.clock)
        self._world.seed()
        self.api_key = self._world.new_key(ALL_SCOPES, self.config.plan)
        for key, scopes in self.config.extra_keys.items():
            self._world.new_key(tuple(scopes), self.config.plan, key)
        self._idempotency: dict[tuple[str, str, str, str], _Stored] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._fault_rng = random.Random(f"faults-{self.config.seed}")
        self._burst_left = 0
        self._sleep = sleep
        self._deliveries: list[Delivery] = []
        self._delivery_log: list[DeliveryRecord] = []
        self._webhook_transport = webhook_transport

    def __repr__(self) -> str:  # never show keys
        return f"Sandbox(seed={self.config.seed}, bots={len(self._world.bots)})"

    # keys ---------------------------------------------------------------------------------

    def add_key(self, scopes: Iterable[str], plan: str = "business", key: str | None = None) -> str:
        """Add an API key with just these scopes; returns the key."""
        if plan not in PLAN_RATE_LIMITS:
            raise ValueError(f"plan must be pro or business, not {plan!r}")
        with self._lock:
            return self._world.new_key(tuple(scopes), plan, key)

    # WSGI ---------------------------------------------------------------------------------

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterator[bytes]:
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

    # the request pipeline -----------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Answer one request (thread-safe)."""
        request_id = new_request_id()
        try:
            if request.path == "/_sandbox" or request.path.startswith("/_sandbox/"):
                return self._admin(request, request_id)
            return self._api(request, request_id)
        except Exception:  # a bug must still answer with the envelope, never a stack trace
            problem = Problem(500, "internal_error")
            return self._problem_response(problem, request_id, [])

    def _api(self, request: SandboxRequest, request_id: str) -> SandboxResponse:
        matched = match_route(request.method, request.path)
        route = matched[0] if isinstance(matched, tuple) else "unknown"
        delay = self.config.latency_ms / 1000.0 + self._latency(route)
        if delay > 0:
            self._sleep(delay)
        with self._lock:
            self._counts[(route, request.method)] += 1
            key_name = bearer(request.headers.get("authorization", ""))
            key = self._world.keys.get(key_name) if key_name else None
            if not isinstance(matched, tuple):
                problem = Problem(404, "resource_not_found", {"resource": "route"})
                if matched == "method":
                    problem.message = f"No {request.method} handler for {request.path}"
                return self._problem_response(problem, request_id, self._peek_headers(key))
            name, scope, ids = matched
            if key is None:
                return self._problem_response(
                    Problem(401, "authentication_required"), request_id, self._anon_headers()
                )
            if self.config.workspace_archived:
                return self._problem_response(
                    Problem(403, "workspace_archived"), request_id, self._peek_headers(key)
                )
            limited = self._rate_limit(key)
            if limited is not None:
                return self._problem_response(limited, request_id, self._peek_headers(key))
            rate_headers = self._peek_headers(key)
            fault = self._fault(name)
            if fault is not None:
                return self._problem_response(fault, request_id, rate_headers)
            try:
                if scope not in key.scopes:
                    required, granted = [scope], sorted(key.scopes)
                    raise Problem(
                        403, "insufficient_scopes", {"required": required, "granted": granted}
                    )
                if name in ("webhooks", "webhook", "create_webhook", "delete_webhook") and (
                    key.plan != "business"
                ):
                    raise Problem(403, "feature_not_available", {"feature": "webhooks"})
                outcome = self._dispatch(name, ids, request, key_name)
            except Problem as problem:
                return self._problem_response(problem, request_id, rate_headers)
            headers = [("X-Request-Id", request_id), *rate_headers, *outcome.headers]
            if outcome.status != 204:
                headers.insert(0, ("Content-Type", "application/json"))
            body = self._wire_times(outcome.body)
            response = SandboxResponse(outcome.status, tuple(headers), body)
            return self._post_fault(name, response)

    def _dispatch(
        self, name: str, ids: list[str], request: SandboxRequest, key_name: str
    ) -> _Outcome:
        query = parse_query(request.query)
        if name == "bots":
            return self._list_bots(query)
        if name == "bot":
            return self._get_bot(ids[0])
        if name == "submissions":
            return self._list_submissions(ids[0], query)
        if name == "submission":
            return self._get_submission(ids[0], ids[1])
        if name == "webhooks":
            return self._list_webhooks(query)
        if name == "webhook":
            return self._get_webhook(ids[0])
        if name == "delete_webhook":
            return self._delete_webhook(ids[0])
        handler: Callable[[Any], _Outcome]
        if name == "create_submission":
            bot_id = ids[0]

            def handler(body: Any) -> _Outcome:
                return self._create_submission(bot_id, body)

        else:
            handler = self._create_webhook
        return self._idempotent(request, key_name, handler)

    # responses ----------------------------------------------------------------------------

    def _problem_response(
        self, problem: Problem, request_id: str, rate_headers: list[tuple[str, str]]
    ) -> SandboxResponse:
        headers = (
            ("Content-Type", "application/json"),
            ("X-Request-Id", request_id),
            *rate_headers,
            *problem.extra_headers,
        )
        return SandboxResponse(problem.status, headers, problem_body(problem))

    def _limit_for(self, key: KeyState) -> int:
        if self.config.rate_limit is not None:
            return self.config.rate_limit
        return PLAN_RATE_LIMITS[key.plan]

    def _prune(self, key: KeyState, now: float) -> None:
        horizon = now - self.config.window_s
        window = key.window
        while window and window[0] <= horizon:
            window.popleft()

    def _peek_headers(self, key: KeyState | None) -> list[tuple[str, str]]:
        if key is None:
            return self._anon_headers()
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

    def _anon_headers(self) -> list[tuple[str, str]]:
        # No key, no bucket: the plan's limit, untouched, resetting now (documented choice).
        limit = self.config.effective_rate_limit
        now_ms = int(self.clock.now() * 1000)
        return [
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(limit)),
            ("X-RateLimit-Reset", str(now_ms)),
        ]

    def _rate_limit(self, key: KeyState) -> Problem | None:
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

    def _rules(self, route: str) -> list[FaultRule]:
        spec = self.config.faults
        return [] if spec is None else [r for r in spec.rules if r.applies_to(route)]

    def _latency(self, route: str) -> float:
        return sum(rule.seconds for rule in self._rules(route) if rule.kind == "latency")

    def _fault(self, route: str) -> Problem | None:
        """A fault injected before the endpoint runs (5xx, 429 bursts)."""
        if self._burst_left > 0:
            self._burst_left -= 1
            return self._too_many(1)
        for rule in self._rules(route):
            if rule.kind not in ("5xx", "429"):
                continue
            if self._fault_rng.random() >= rule.probability:
                continue
            if rule.kind == "429":
                self._burst_left = rule.burst - 1
                return self._too_many(1)
            return Problem(500, "internal_error")
        return None

    def _post_fault(self, route: str, response: SandboxResponse) -> SandboxResponse:
        """A fault that strikes after the endpoint ran: its effects stay, its answer is lost."""
        for rule in self._rules(route):
            if rule.kind not in ("drop", "truncate", "html"):
                continue
            if self._fault_rng.random() >= rule.probability:
                continue
            if rule.kind == "drop":
                return SandboxResponse(response.status, response.headers, b"", drop=True)
            if rule.kind == "truncate":
                return SandboxResponse(
                    response.status, response.headers, response.body[: len(response.body) // 2]
                )
            headers = tuple(
                (k, "text/html; charset=utf-8" if k == "Content-Type" else v)
                for k, v in response.headers
            )
            return SandboxResponse(200, headers, _HTML_PAGE)
        return response

    # pagination ---------------------------------------------------------------------------

    def _encode_cursor(self, item_id: str) -> str:
        if self.config.cursor_mode == "id":
            return item_id
        token = b"after:" + item_id.encode()
        if self.config.cursor_ttl_s is not None:
            token += b"@" + str(self._world.now_ms()).encode()
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def _decode_cursor(self, cursor: str) -> str:
        if self.config.cursor_mode == "id":
            return cursor
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise invalid(["cursor"], "Malformed cursor", "invalid_cursor") from None
        if not raw.startswith(b"after:"):
            raise invalid(["cursor"], "Malformed cursor", "invalid_cursor")
        item_id, at, issued = raw[6:].decode("utf-8", "replace").partition("@")
        ttl = self.config.cursor_ttl_s
        if ttl is not None:
            if not at or not issued.isdigit():
                raise invalid(["cursor"], "Malformed cursor", "invalid_cursor")
            if self._world.now_ms() - int(issued) > ttl * 1000:
                raise invalid(["cursor"], "Cursor expired", "expired_cursor")
        return item_id

    def _page(self, ids: list[str], query: Mapping[str, str]) -> tuple[range, str | None]:
        """(positions in ``ids``, in list order; next_cursor) of the requested page.

        ``ids`` is sorted ascending; with ``list_order="desc"`` pages walk it from the newest end
        and a cursor means "older than this item", so items created since are never reached.
        """
        limit = parse_limit(query)
        cursor = query.get("cursor", "")
        position: int | None = None
        if cursor:
            item_id = self._decode_cursor(cursor)
            position = bisect.bisect_left(ids, item_id)
            if position >= len(ids) or ids[position] != item_id:
                raise invalid(["cursor"], "Unknown cursor", "invalid_cursor")
        if self.config.list_order == "desc":
            high = len(ids) if position is None else position
            low = max(0, high - limit)
            next_cursor = self._encode_cursor(ids[low]) if low > 0 else None
            return range(high - 1, low - 1, -1), next_cursor
        start = 0 if position is None else position + 1
        end = min(start + limit, len(ids))
        next_cursor = self._encode_cursor(ids[end - 1]) if end < len(ids) else None
        return range(start, end), next_cursor

    def _wire_times(self, body: bytes) -> bytes:
        """The body as sent: without milliseconds when ``timestamp_precision`` is "s"."""
        if self.config.timestamp_precision == "ms":
            return body
        return _MS_STAMP.sub(rb'\1\2Z"', body)

    def _pagination(self, next_cursor: str | None, total: int) -> dict[str, Any]:
        pagination: dict[str, Any] = {
            "has_more": next_cursor is not None,
            "next_cursor": next_cursor,
        }
        if self.config.unknown_extras:
            pagination["total_estimate"] = total
        return pagination

    def _with_extras(self, item: dict[str, Any]) -> dict[str, Any]:
        return {**_EXTRA_ITEM_KEYS, **item} if self.config.unknown_extras else item

    def _sub_body(self, body: bytes) -> bytes:
        """A stored list item as sent (unknown keys first when ``unknown_extras``)."""
        return _EXTRA_ITEM_PREFIX + body[1:] if self.config.unknown_extras else body

    def _bot_detail(self, bot: BotState) -> dict[str, Any]:
        detail = bot.detail(self.config.schema_shape)
        if self.config.unknown_extras:
            schema = detail["schema"]
            if isinstance(schema, dict):
                schema["fields"].append(dict(_MYSTERY_ITEM))
                schema["layout_version"] = 3
            detail = self._with_extras(detail)
        return detail

    # endpoints ----------------------------------------------------------------------------

    def _bot(self, bot_id: str) -> BotState:
        bot = self._world.bots.get(bot_id)
        if bot is None:
            raise Problem(404, "resource_not_found", {"resource": "intake_bot"})
        return bot

    def _list_bots(self, query: Mapping[str, str]) -> _Outcome:
        ids = self._world.bot_ids
        positions, next_cursor = self._page(ids, query)
        items = [self._with_extras(self._world.bots[ids[i]].summary()) for i in positions]
        pagination = self._pagination(next_cursor, len(ids))
        return _ok({"intake_bots": items, "pagination": pagination})

    def _get_bot(self, bot_id: str) -> _Outcome:
        detail = self._bot_detail(self._bot(bot_id))
        return _ok({"intake_bot": detail} if self.config.bot_detail_wrapped else detail)

    def _list_submissions(self, bot_id: str, query: Mapping[str, str]) -> _Outcome:
        bot = self._bot(bot_id)
        positions, next_cursor = self._page(bot.sub_ids, query)
        pagination = dumps(self._pagination(next_cursor, len(bot.sub_ids)))
        if self.config.unknown_extras or self.config.list_order != "asc":
            items = b",".join(self._sub_body(bot.sub_bodies[i]) for i in positions)
        else:  # the common case: one slice of stored bytes
            items = b",".join(bot.sub_bodies[positions.start : positions.stop])
        body = b"".join(
            (
                b'{"success":true,"data":{"submissions":[',
                items,
                b'],"schema":',
                bot.list_schema(),
                b',"pagination":',
                pagination,
                b"}}",
            )
        )
        return _Outcome(200, body)

    def _submission_detail(self, bot: BotState, submission_id: str) -> dict[str, Any]:
        index = bot.position(submission_id)
        if index is None:
            raise Problem(404, "resource_not_found", {"resource": "submission"})
        item = json.loads(self._sub_body(bot.sub_bodies[index]))
        detail = {key: value for key, value in item.items() if key != "message_count"}
        detail["intake_bot_id"] = bot.id
        detail["messages"] = messages(bot, item)
        order = ("id", "intake_bot_id", "data", "status", "ai_summary", "is_test", "file_count")
        head = {key: detail.pop(key) for key in order}
        return {**head, **detail}

    def _get_submission(self, bot_id: str, submission_id: str) -> _Outcome:
        detail = self._submission_detail(self._bot(bot_id), submission_id)
        return _ok({"submission": detail})

    def _create_submission(self, bot_id: str, body: Any) -> _Outcome:
        bot = self._bot(bot_id)
        data, status, is_test = validate_submission(
            bot,
            body,
            enforce_required=self.config.enforce_required,
            paused_bot_accepts=self.config.paused_bot_accepts,
        )
        quota = self.config.submission_quota
        if quota is not None and self._world.api_created >= quota:
            details = {"resource": "submissions", "current": self._world.api_created, "max": quota}
            raise Problem(429, "plan_limit_exceeded", details)
        created = self._world.insert_submission(bot, data, status, is_test, from_api=True)
        self._world.api_created += 1
        if status == "COMPLETED":
            self._emit_submission("submission.completed", bot, created)
        wire = {key: created[key] for key in ("id", "status", "created_at")}
        return _Outcome(
            self.config.create_status, dumps({"success": True, "data": {"submission": wire}})
        )

    def _list_webhooks(self, query: Mapping[str, str]) -> _Outcome:
        ids = self._world.webhook_ids
        positions, next_cursor = self._page(ids, query)
        items = [self._with_extras(self._world.webhooks[ids[i]].wire()) for i in positions]
        pagination = self._pagination(next_cursor, len(ids))
        return _ok({"webhooks": items, "pagination": pagination})

    def _webhook(self, webhook_id: str) -> WebhookState:
        hook = self._world.webhooks.get(webhook_id)
        if hook is None:
            raise Problem(404, "resource_not_found", {"resource": "webhook"})
        return hook

    def _get_webhook(self, webhook_id: str) -> _Outcome:
        return _ok({"webhook": self._with_extras(self._webhook(webhook_id).wire())})

    def _create_webhook(self, body: Any) -> _Outcome:
        url, events, description = validate_webhook(body)
        world = self._world
        now = world.now_ms()
        hook = WebhookState(
            id=world.mint_global_id(now, "wh00"),
            url=url,
            events=events,
            description=description,
            secret="whsec_" + secrets.token_hex(24),
            created_ms=now,
            updated_ms=now,
        )
        world.webhooks[hook.id] = hook
        bisect.insort(world.webhook_ids, hook.id)
        payload = {"success": True, "data": {"webhook": hook.wire(with_secret=True)}}
        return _Outcome(self.config.create_status, dumps(payload))

    def _delete_webhook(self, webhook_id: str) -> _Outcome:
        self._webhook(webhook_id)
        world = self._world
        del world.webhooks[webhook_id]
        world.webhook_ids.remove(webhook_id)
        self._deliveries = [d for d in self._deliveries if d.webhook_id != webhook_id]
        if self.config.delete_status == 204:
            return _Outcome(204, b"")
        return _ok({"deleted": True, "id": webhook_id})

    # POST bodies and idempotency ----------------------------------------------------------

    def _idempotent(
        self, request: SandboxRequest, key_name: str, handler: Callable[[Any], _Outcome]
    ) -> _Outcome:
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key is not None and len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise invalid(["headers", "Idempotency-Key"], "At most 255 characters", "too_big")
        if not idempotency_key:
            return handler(json_body(request.body))
        now = self.clock.now()
        scope = (key_name, request.method, request.path, idempotency_key)
        fingerprint = body_fingerprint(request.body)
        stored = self._idempotency.get(scope)
        if stored is not None and stored.expires <= now:
            del self._idempotency[scope]
            stored = None
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise Problem(409, "idempotency_conflict")
            headers = [*stored.headers, ("Idempotent-Replayed", "true")]
            return _Outcome(stored.status, stored.body, headers)
        try:
            outcome = handler(json_body(request.body))
        except Problem as problem:
            if problem.status in (400, 404):  # the same request would fail the same way
                body = problem_body(problem)
                self._store(
                    scope, _Stored(fingerprint, problem.status, (), body, now + IDEMPOTENCY_TTL_S)
                )
            raise
        self._store(
            scope,
            _Stored(
                fingerprint,
                outcome.status,
                tuple(outcome.headers),
                outcome.body,
                now + IDEMPOTENCY_TTL_S,
            ),
        )
        return outcome

    def _store(self, scope: tuple[str, str, str, str], stored: _Stored) -> None:
        if len(self._idempotency) > 100_000:
            now = self.clock.now()
            self._idempotency = {k: v for k, v in self._idempotency.items() if v.expires > now}
        self._idempotency[scope] = stored

    # webhook events -----------------------------------------------------------------------

    def _emit(self, event_type: str, data: dict[str, Any]) -> None:
        world = self._world
        subscribers = [
            hook
            for hook_id in world.webhook_ids
            if (hook := world.webhooks[hook_id]).status == "active" and event_type in hook.events
        ]
        if not subscribers:
            return
        now = self.clock.now()
        event_id = "evt_" + world.mint_global_id(int(now * 1000), "ev00")
        payload = {
            "id": event_id,
            "type": event_type,
            "created_at": iso_ms(int(now * 1000)),
            "data": data,
        }
        body = self._wire_times(dumps(payload))
        for hook in subscribers:
            self._deliveries.append(Delivery(event_id, event_type, hook.id, body, now))

    def _emit_submission(self, event_type: str, bot: BotState, wire: Mapping[str, Any]) -> None:
        submission = {
            "id": wire["id"],
            "intake_bot_id": bot.id,
            "status": wire["status"],
            "data": wire["data"],
            "created_at": wire["created_at"],
        }
        if "updated_at" in wire:
            submission["updated_at"] = wire["updated_at"]
        self._emit(event_type, {"submission": submission})

    def deliver_due(self) -> int:
        """Send every webhook delivery due on the sandbox clock; returns how many were tried.

        The world lock is not held while sending, so a receiver may call the sandbox back.
        """
        with self._lock:
            now = self.clock.now()
            due = [d for d in self._deliveries if d.due <= now]
            self._deliveries = [d for d in self._deliveries if d.due > now]
            jobs = []
            for delivery in due:
                hook = self._world.webhooks.get(delivery.webhook_id)
                if hook is not None and hook.status == "active":
                    jobs.append((delivery, hook.url, hook.secret))
        results = [
            (delivery, self._send(delivery, url, secret, now)) for delivery, url, secret in jobs
        ]
        with self._lock:
            for delivery, (ok, status, error) in results:
                self._record(delivery, ok, status, error, now)
        return len(jobs)

    def _send(
        self, delivery: Delivery, url: str, secret: str, now: float
    ) -> tuple[bool, int | None, str | None]:
        timestamp = int(now)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-IoZen-Event-Id": delivery.event_id,
            "X-IoZen-Event-Type": delivery.event_type,
            "X-IoZen-Timestamp": str(timestamp),
            "X-IoZen-Signature": signature(
                secret, delivery.body, timestamp, self.config.webhook_signature
            ),
        }
        try:
            with httpx.Client(
                transport=self._webhook_transport, timeout=self.config.webhook_timeout_s
            ) as client:
                answer = client.post(url, content=delivery.body, headers=headers)
        except httpx.HTTPError as error:
            return False, None, type(error).__name__
        return 200 <= answer.status_code < 300, answer.status_code, None

    def _record(
        self, delivery: Delivery, ok: bool, status: int | None, error: str | None, now: float
    ) -> None:
        self._delivery_log.append(
            DeliveryRecord(
                delivery.event_id,
                delivery.event_type,
                delivery.webhook_id,
                delivery.attempt,
                now,
                ok,
                status,
                error,
            )
        )
        hook = self._world.webhooks.get(delivery.webhook_id)
        if hook is None:
            return
        now_ms = int(now * 1000)
        hook.last_delivery_ms = now_ms
        hook.last_delivery_ok = ok
        hook.updated_ms = max(hook.updated_ms, now_ms)
        if ok:
            hook.consecutive_fails = 0
            return
        hook.consecutive_fails += 1
        if hook.consecutive_fails >= MAX_CONSECUTIVE_FAILS:
            hook.status = "disabled"
            self._deliveries = [d for d in self._deliveries if d.webhook_id != hook.id]
            return
        if delivery.attempt < MAX_ATTEMPTS:
            delivery.attempt += 1
            delivery.due = now + backoff_s(self.config.webhook_retry_base_s, delivery.attempt - 1)
            self._deliveries.append(delivery)

    def deliveries(self) -> list[DeliveryRecord]:
        """Every delivery attempt so far, oldest first."""
        with self._lock:
            return list(self._delivery_log)

    def pending_deliveries(self) -> list[Delivery]:
        with self._lock:
            return sorted(self._deliveries, key=lambda d: d.due)

    # ground truth -------------------------------------------------------------------------

    def truth_bots(self) -> list[dict[str, Any]]:
        """Every bot as ``GET /intake-bots/:id`` returns it (unwrapped), in list order."""
        with self._lock:
            ids = self._list_order(self._world.bot_ids)
            return [self._wire_json(self._bot_detail(self._world.bots[i])) for i in ids]

    def truth_submissions(self, bot_id: str | None = None) -> list[dict[str, Any]]:
        """A bot's submissions exactly as the list returns them, in order.

        Without ``bot_id``: every bot's, each with ``intake_bot_id`` added.
        """
        with self._lock:
            if bot_id is not None:
                bodies = self._list_order(self._bot(bot_id).sub_bodies)
                return [self._wire_item(body) for body in bodies]
            everything = []
            for each in self._list_order(self._world.bot_ids):
                for body in self._list_order(self._world.bots[each].sub_bodies):
                    item = self._wire_item(body)
                    item["intake_bot_id"] = each
                    everything.append(item)
            return everything

    def _list_order(self, items: list[Any]) -> list[Any]:
        return items[::-1] if self.config.list_order == "desc" else items

    def _wire_item(self, body: bytes) -> dict[str, Any]:
        item: dict[str, Any] = json.loads(self._wire_times(self._sub_body(body)))
        return item

    def _wire_json(self, value: dict[str, Any]) -> dict[str, Any]:
        if self.config.timestamp_precision == "ms":
            return value
        wired: dict[str, Any] = json.loads(self._wire_times(dumps(value)))
        return wired

    def truth_submission(self, bot_id: str, submission_id: str) -> dict[str, Any]:
        """One submission as ``GET .../submissions/:id`` returns it (with messages)."""
        with self._lock:
            return self._wire_json(self._submission_detail(self._bot(bot_id), submission_id))

    def truth_webhooks(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = self._list_order(self._world.webhook_ids)
            return [self._wire_json(self._with_extras(self._world.webhooks[i].wire())) for i in ids]

    def submission_total(self) -> int:
        with self._lock:
            return sum(len(bot.sub_ids) for bot in self._world.bots.values())

    def submission_ids(self, bot_id: str | None = None) -> list[str]:
        """Submission ids in list order, without parsing bodies (cheap at a million)."""
        with self._lock:
            if bot_id is not None:
                return list(self._bot(bot_id).sub_ids)
            return [i for each in self._world.bot_ids for i in self._world.bots[each].sub_ids]

    def bot_ids(self) -> list[str]:
        with self._lock:
            return list(self._world.bot_ids)

    def request_count(self, route: str | None = None, method: str | None = None) -> int:
        """Requests received under /api/v1, by route name (see config.ROUTE_NAMES) and method."""
        with self._lock:
            return sum(
                n
                for (r, m), n in self._counts.items()
                if (route is None or r == route) and (method is None or m == method.upper())
            )

    # world moves --------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward (the same as ``clock.advance``)."""
        self.clock.advance(seconds)

    def generate_submissions(
        self, bot_id: str, n: int, status: str | None = None, is_test: bool = False
    ) -> list[str]:
        """Create n submissions as if people used the bot; returns their ids, oldest first."""
        if status is not None and status not in SUBMISSION_STATUSES:
            raise ValueError(f"status must be one of {SUBMISSION_STATUSES}")
        with self._lock:
            bot = self._bot(bot_id)
            made = []
            for _ in range(n):
                chosen = status or (
                    "IN_PROGRESS"
                    if self._world.rng.random() < self.config.in_progress_share
                    else "COMPLETED"
                )
                data = self._world.random_answers(bot)
                created = self._world.insert_submission(bot, data, chosen, is_test, from_api=False)
                if chosen == "COMPLETED":
                    self._emit_submission("submission.completed", bot, created)
                made.append(created["id"])
            return made

    def update_submission(
        self,
        bot_id: str,
        submission_id: str,
        *,
        status: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Edit a submission (answers merged in, status set); ``updated_at`` moves forward."""
        if status is not None and status not in SUBMISSION_STATUSES:
            raise ValueError(f"status must be one of {SUBMISSION_STATUSES}")
        with self._lock:
            bot = self._bot(bot_id)
            index = bot.position(submission_id)
            if index is None:
                raise Problem(404, "resource_not_found", {"resource": "submission"})
            before, after = self._world.replace_submission(
                bot, index, status, dict(data) if data is not None else None
            )
            if before["status"] != "COMPLETED" and after["status"] == "COMPLETED":
                self._emit_submission("submission.completed", bot, after)
            self._emit_submission("submission.updated", bot, after)

    def pause_bot(self, bot_id: str, status: str = "PAUSED") -> None:
        """Set a bot's status (bumps its ``updated_at``; fires intake-bot.status-changed)."""
        with self._lock:
            bot = self._bot(bot_id)
            previous = bot.status
            bot.status = status
            bot.updated_ms = max(self._world.now_ms(), bot.updated_ms + 1)
            if previous != status:
                data = {"intake_bot": {"id": bot.id, "status": status, "previous_status": previous}}
                self._emit("intake-bot.status-changed", data)

    def delete_bot(self, bot_id: str) -> None:
        """Delete a bot and its submissions, as ioZen's app does: gone from the listing, 404."""
        with self._lock:
            self._bot(bot_id)
            self._world.remove_bot(bot_id)

    def add_field(self, bot_id: str, field: Mapping[str, Any]) -> None:
        """Append a schema item (a field unless ``kind`` says content).

        Bumps the bot's schema_version and updated_at.
        """
        with self._lock:
            bot = self._bot(bot_id)
            item = dict(field)
            if "name" not in item or not isinstance(item["name"], str):
                raise ValueError("a field needs a string name")
            if any(existing["name"] == item["name"] for existing in bot.items):
                raise ValueError(f"bot already has an item named {item['name']!r}")
            kind = item.setdefault("kind", "field")
            if kind == "field":
                item.setdefault("type", "short_text")
                item.setdefault("label", item["name"].replace("_", " ").title())
                item.setdefault("required", False)
                item.setdefault("id", f"field_{len(bot.items) + 1}")
            else:
                item.setdefault("id", f"cb_{len(bot.items) + 1}")
                item.setdefault("label", None)
            bot.items.append(item)
            bot.schema_version += 1
            bot.schema_changed()
            bot.updated_ms = max(self._world.now_ms(), bot.updated_ms + 1)

    def add_bot(
        self,
        name: str = "New Bot",
        fields: list[dict[str, Any]] | None = None,
        description: str = "Added while the sandbox runs",
    ) -> str:
        """Create a bot (the Customer Onboarding schema unless fields are given); returns its id."""
        with self._lock:
            return self._world.add_bot(name, fields, description).id

    # sandbox-only HTTP routes -------------------------------------------------------------

    def _admin(self, request: SandboxRequest, request_id: str) -> SandboxResponse:
        with self._lock:
            self._counts[("admin", request.method)] += 1
        return admin_response(self, request, request_id)


# helpers ------------------------------------------------------------------------------------


def _ok(data: Any) -> _Outcome:
    return _Outcome(200, dumps({"success": True, "data": data}))
