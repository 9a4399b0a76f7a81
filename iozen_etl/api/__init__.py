"""The ioZen API v1 client: typed records, typed errors, pages, a shared rate budget, safe retries.

Knows nothing of Dagster; everything a caller needs is importable from here.
"""

from __future__ import annotations

from iozen_etl.api.client import USER_AGENT, IozenClient
from iozen_etl.api.errors import (
    ApiError,
    AuthenticationRequired,
    BodyTooLarge,
    FeatureNotAvailable,
    IdempotencyConflict,
    InsufficientScopes,
    InternalError,
    IozenError,
    MalformedResponse,
    PlanLimitExceeded,
    RateLimitExceeded,
    ResourceNotFound,
    TransportError,
    ValidationFailed,
    WaitCeilingReached,
    WorkspaceArchived,
)
from iozen_etl.api.exchange import MAX_BODY_BYTES
from iozen_etl.api.models import (
    CreatedSubmission,
    IntakeBot,
    Message,
    Page,
    SchemaItem,
    Submission,
    Webhook,
)
from iozen_etl.api.paging import PAGE_SIZE, is_ascending, iter_pages
from iozen_etl.api.ratelimit import RateBudget, shared_budget
from iozen_etl.api.retry import RetryPolicy
from iozen_etl.api.stats import ClientStats
from iozen_etl.settings import DEFAULT_BASE_URL

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_BODY_BYTES",
    "PAGE_SIZE",
    "USER_AGENT",
    "ApiError",
    "AuthenticationRequired",
    "BodyTooLarge",
    "ClientStats",
    "CreatedSubmission",
    "FeatureNotAvailable",
    "IdempotencyConflict",
    "InsufficientScopes",
    "IntakeBot",
    "InternalError",
    "IozenClient",
    "IozenError",
    "MalformedResponse",
    "Message",
    "Page",
    "PlanLimitExceeded",
    "RateBudget",
    "RateLimitExceeded",
    "ResourceNotFound",
    "RetryPolicy",
    "SchemaItem",
    "Submission",
    "TransportError",
    "ValidationFailed",
    "WaitCeilingReached",
    "Webhook",
    "WorkspaceArchived",
    "is_ascending",
    "iter_pages",
    "shared_budget",
]
