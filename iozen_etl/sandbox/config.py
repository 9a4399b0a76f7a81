"""How a sandbox behaves: its seed, size, plan, limits, faults and the variants of the API's
open questions (decisions #1-#24 of docs/decisions.md, cited below by number).

Fault SPEC grammar (``--faults``), items separated by commas::

    5xx=0.1            answer 500 internal_error with probability 0.1 (before the endpoint runs)
    429=0.05           with probability 0.05 start a burst of 3 429 rate_limit_exceeded answers
    429=0.05:5         ... bursts of 5
    drop=0.02          handle the request, then close the connection without a response
    truncate=0.02      answer 200 with the JSON body cut in half
    html=0.02          answer 200 with an HTML page instead of JSON
    latency=50ms       wait this long before answering (also ``0.2s``)
    ...@submissions    an item may end in ``@route`` (or ``@route|route``): those routes only

Routes: ``bots``, ``bot``, ``submissions``, ``submission``, ``create_submission``, ``webhooks``,
``webhook``, ``create_webhook``, ``delete_webhook``. Decisions are drawn from a generator seeded
with the sandbox's seed, so the same requests in the same order meet the same faults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROUTE_NAMES = (
    "bots",
    "bot",
    "submissions",
    "submission",
    "create_submission",
    "webhooks",
    "webhook",
    "create_webhook",
    "delete_webhook",
)
FAULT_KINDS = ("5xx", "429", "drop", "truncate", "html", "latency")
PLAN_RATE_LIMITS = {"pro": 100, "business": 500}
ALL_SCOPES = (
    "read:intake-bots",
    "write:intake-bots",
    "read:submissions",
    "read:contacts",
    "read:records",
    "manage:webhooks",
)


class FaultSpecError(ValueError):
    """A ``--faults`` string that does not follow the grammar."""


@dataclass(frozen=True)
class FaultRule:
    kind: str
    probability: float = 0.0  # unused for latency
    seconds: float = 0.0  # latency only
    burst: int = 3  # 429 only
    routes: frozenset[str] | None = None  # None: every /api/v1 route

    def applies_to(self, route: str) -> bool:
        return self.routes is None or route in self.routes


@dataclass(frozen=True)
class FaultSpec:
    rules: tuple[FaultRule, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> FaultSpec:
        rules = [_parse_rule(item.strip()) for item in spec.split(",") if item.strip()]
        return cls(tuple(rules))

    def __str__(self) -> str:
        return ",".join(_format_rule(rule) for rule in self.rules)


def _parse_duration(text: str) -> float:
    try:
        if text.endswith("ms"):
            return float(text[:-2]) / 1000.0
        if text.endswith("s"):
            return float(text[:-1])
        return float(text) / 1000.0
    except ValueError:
        raise FaultSpecError(f"bad duration {text!r}: use e.g. 50ms or 0.2s") from None


def _parse_rule(item: str) -> FaultRule:
    body, at, route_part = item.partition("@")
    kind, eq, value = body.partition("=")
    kind = kind.strip()
    if not eq or kind not in FAULT_KINDS:
        raise FaultSpecError(f"bad fault item {item!r}: expected KIND=VALUE, KIND in {FAULT_KINDS}")
    routes: frozenset[str] | None = None
    if at:
        names = frozenset(name.strip() for name in route_part.split("|") if name.strip())
        unknown = sorted(names - set(ROUTE_NAMES))
        if unknown or not names:
            raise FaultSpecError(f"unknown route(s) {unknown} in {item!r}; routes: {ROUTE_NAMES}")
        routes = names
    value = value.strip()
    if kind == "latency":
        return FaultRule(kind, seconds=_parse_duration(value), routes=routes)
    burst = 3
    if kind == "429" and ":" in value:
        value, _, burst_text = value.partition(":")
        try:
            burst = int(burst_text)
        except ValueError:
            raise FaultSpecError(f"bad burst length in {item!r}") from None
        if burst < 1:
            raise FaultSpecError(f"burst length must be >= 1 in {item!r}")
    try:
        probability = float(value)
    except ValueError:
        raise FaultSpecError(f"bad probability in {item!r}") from None
    if not 0.0 <= probability <= 1.0:
        raise FaultSpecError(f"probability must be within 0..1 in {item!r}")
    return FaultRule(kind, probability=probability, burst=burst, routes=routes)


def _format_rule(rule: FaultRule) -> str:
    if rule.kind == "latency":
        text = f"latency={rule.seconds * 1000:g}ms"
    elif rule.kind == "429":
        text = f"429={rule.probability:g}:{rule.burst}"
    else:
        text = f"{rule.kind}={rule.probability:g}"
    if rule.routes is not None:
        text += "@" + "|".join(sorted(rule.routes))
    return text


@dataclass
class SandboxConfig:
    """Everything that makes one sandbox differ from another; defaults per docs/decisions.md."""

    seed: int = 0
    bots: int = 20
    submissions_per_bot: int = 50  # the mean; the spread over bots is skewed
    in_progress_share: float = 0.15  # of seeded and generated submissions, left IN_PROGRESS
    plan: str = "business"
    rate_limit: int | None = None  # None: the plan's limit (pro 100, business 500)
    window_s: float = 60.0
    latency_ms: float = 0.0
    faults: FaultSpec | None = None
    submission_quota: int | None = None  # submissions created through the API, then 429
    create_status: int = 200  # decision #1: 200, or 201
    delete_status: int = 200  # decision #2: 200 with an envelope, or 204
    schema_shape: str = "fields"  # decision #16: "fields" ({"fields": [...]}) or "legacy" (list)
    bot_detail_wrapped: bool = True  # data.intake_bot, or the bot as data itself
    retry_after_in_body: bool = True  # 429 details.retry_after
    retry_after_header: bool = False  # 429 Retry-After header
    retry_after_zero: bool = False  # say 0 in both places (a client must not busy-loop)
    cursor_mode: str = "id"  # "id": next_cursor is the last item's id; "opaque": a token
    # Opaque cursors older than this (sandbox clock) are refused with 400 (decision #6, open
    # question: whether cursors expire). Only with cursor_mode="opaque"; None: never expire.
    cursor_ttl_s: float | None = None
    list_order: str = "asc"  # decision #5: "asc" by (created_at, id), or "desc" (newest first)
    timestamp_precision: str = "ms"  # decision #24: "ms" (.000Z) or "s" (no milliseconds)
    # decision #16 and additive API changes: unknown keys in bots, submissions, webhooks and
    # list envelopes, and a schema item of an unknown kind ("mystery") in every bot detail.
    unknown_extras: bool = False
    enforce_required: bool = True  # COMPLETED submissions must answer required fields
    paused_bot_accepts: bool = False  # a PAUSED bot refuses new submissions (400)
    bot_touch_on_submission: bool = False  # creating a submission also moves bot updated_at
    workspace_archived: bool = False  # every authenticated request gets 403 workspace_archived
    real_time: bool = False  # False: the clock stands still until advance(); True: wall time
    webhook_signature: str = "body"  # "body" or "timestamp.body" (decision #20, and its variant)
    webhook_retry_base_s: float = 1.0  # exponential backoff: base * 2**(attempt-1)
    webhook_timeout_s: float = 10.0
    extra_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key -> scopes

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        checks = [
            (self.plan in PLAN_RATE_LIMITS, f"plan must be pro or business, not {self.plan!r}"),
            (self.bots >= 0, "bots must be >= 0"),
            (self.submissions_per_bot >= 0, "submissions_per_bot must be >= 0"),
            (0 <= self.in_progress_share <= 1, "in_progress_share must be within 0..1"),
            (self.rate_limit is None or self.rate_limit >= 1, "rate_limit must be >= 1"),
            (self.window_s > 0, "window_s must be > 0"),
            (self.create_status in (200, 201), "create_status must be 200 or 201"),
            (self.delete_status in (200, 204), "delete_status must be 200 or 204"),
            (self.schema_shape in ("fields", "legacy"), "schema_shape must be fields or legacy"),
            (self.cursor_mode in ("id", "opaque"), "cursor_mode must be id or opaque"),
            (
                self.cursor_ttl_s is None
                or (self.cursor_ttl_s > 0 and self.cursor_mode == "opaque"),
                "cursor_ttl_s must be > 0 and needs cursor_mode opaque",
            ),
            (self.list_order in ("asc", "desc"), "list_order must be asc or desc"),
            (self.timestamp_precision in ("ms", "s"), "timestamp_precision must be ms or s"),
            (
                self.webhook_signature in ("body", "timestamp.body"),
                "webhook_signature must be body or timestamp.body",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def effective_rate_limit(self) -> int:
        return self.rate_limit if self.rate_limit is not None else PLAN_RATE_LIMITS[self.plan]
