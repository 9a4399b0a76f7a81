"""The API v1 route table: each route's method, path pattern, name, scope, plan feature and
handler, in one place. Route names are ``config.ROUTE_NAMES`` (faults and request counts use
them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iozen_etl.sandbox.endpoints import Endpoints
from iozen_etl.sandbox.protocol import Outcome

API_PREFIX = "/api/v1"
READ_BOTS = "read:intake-bots"
READ_SUBMISSIONS = "read:submissions"
MANAGE_WEBHOOKS = "manage:webhooks"

# Called with the path's ids and the parsed query (GET, DELETE) or the JSON body (POST).
Handler = Callable[[Endpoints, list[str], Any], Outcome]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # under /api/v1; ":id" matches one path segment
    name: str
    scope: str
    handler: Handler
    feature: str | None = None  # the plan feature the route needs, if any
    segments: tuple[str | None, ...] = field(init=False)  # the pattern, None for an id

    def __post_init__(self) -> None:
        parts = tuple(None if part == ":id" else part for part in self.pattern.split("/"))
        object.__setattr__(self, "segments", parts)


# In config.ROUTE_NAMES order (tests/sandbox/test_faults.py holds them to it).
ROUTES = (
    Route("GET", "intake-bots", "bots", READ_BOTS, lambda api, _, q: api.list_bots(q)),
    Route("GET", "intake-bots/:id", "bot", READ_BOTS, lambda api, ids, _: api.get_bot(ids[0])),
    Route(
        "GET",
        "intake-bots/:id/submissions",
        "submissions",
        READ_SUBMISSIONS,
        lambda api, ids, q: api.list_submissions(ids[0], q),
    ),
    Route(
        "GET",
        "intake-bots/:id/submissions/:id",
        "submission",
        READ_SUBMISSIONS,
        lambda api, ids, _: api.get_submission(ids[0], ids[1]),
    ),
    Route(
        "POST",
        "intake-bots/:id/submissions",
        "create_submission",
        "write:intake-bots",
        lambda api, ids, body: api.create_submission(ids[0], body),
    ),
    Route(
        "GET",
        "webhooks",
        "webhooks",
        MANAGE_WEBHOOKS,
        lambda api, _, q: api.list_webhooks(q),
        feature="webhooks",
    ),
    Route(
        "GET",
        "webhooks/:id",
        "webhook",
        MANAGE_WEBHOOKS,
        lambda api, ids, _: api.get_webhook(ids[0]),
        feature="webhooks",
    ),
    Route(
        "POST",
        "webhooks",
        "create_webhook",
        MANAGE_WEBHOOKS,
        lambda api, _, body: api.create_webhook(body),
        feature="webhooks",
    ),
    Route(
        "DELETE",
        "webhooks/:id",
        "delete_webhook",
        MANAGE_WEBHOOKS,
        lambda api, ids, _: api.delete_webhook(ids[0]),
        feature="webhooks",
    ),
)


@dataclass(frozen=True)
class Match:
    """The route a request is for, and the ids in its path; no route: ``route`` is None."""

    route: Route | None
    ids: list[str] = field(default_factory=list)
    other_method: bool = False  # the path is known, under another method

    @property
    def name(self) -> str:
        """The route's name, or "unknown" (how requests are counted)."""
        return self.route.name if self.route is not None else "unknown"


def match_route(method: str, path: str) -> Match:
    if not path.startswith(API_PREFIX + "/"):
        return Match(None)
    segments = path[len(API_PREFIX) + 1 :].rstrip("/").split("/")
    if any(segment == "" for segment in segments):
        return Match(None)
    other_method = False
    for route in ROUTES:
        if len(route.segments) != len(segments):
            continue
        pairs = list(zip(route.segments, segments, strict=True))
        if all(p is None or p == s for p, s in pairs):
            if route.method == method:
                return Match(route, [s for p, s in pairs if p is None])
            other_method = True
    return Match(None, other_method=other_method)
