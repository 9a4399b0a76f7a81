"""Every failure the ioZen client raises, as one small tree.

```
IozenError                      .method .path .status .request_id
 ├─ TransportError              connection refused/reset, timeout (after retries)
 ├─ MalformedResponse           HTML page, invalid or truncated JSON, missing envelope
 ├─ WaitCeilingReached          the next retry wait would pass the policy's ceiling
 ├─ BodyTooLarge                refused before sending (> 1,048,576 bytes)
 └─ ApiError                    .code .message .details (the error envelope)
     ├─ AuthenticationRequired  401 authentication_required
     ├─ ValidationFailed        400 validation_failed (.issues, .is_cursor_error)
     ├─ InsufficientScopes      403 insufficient_scopes (.required, .granted)
     ├─ FeatureNotAvailable     403 feature_not_available (.feature)
     ├─ WorkspaceArchived       403 workspace_archived
     ├─ ResourceNotFound        404 resource_not_found (.resource)
     ├─ IdempotencyConflict     409 idempotency_conflict
     ├─ RateLimitExceeded       429 rate_limit_exceeded (.retry_after)
     ├─ PlanLimitExceeded       429 plan_limit_exceeded (.resource, .current, .max)
     └─ InternalError           500 internal_error
```

An error never holds the API key: it is built only from the method, the path (relative to the
base URL, no query string), the status, the request id and the server's error envelope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class IozenError(Exception):
    """Base of every error the client raises; str() names method, path, status and request id."""

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message
        self.method = method
        self.path = path
        self.status = status
        self.request_id = request_id
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = " ".join(part for part in (self.method, self.path) if part) or "request"
        status = "no response" if self.status is None else f"HTTP {self.status}"
        request_id = self.request_id or "none"
        return f"{self.message} [{where}: {status}, request id {request_id}]"

    def __str__(self) -> str:
        return self._describe()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields do not survive Exception's default pickling (cls(*args)); errors
        # cross process boundaries (executors, Dagster runs), so rebuild from the attributes.
        return (_restore, (type(self), dict(self.__dict__)))


def _restore(cls: type[IozenError], state: dict[str, Any]) -> IozenError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._describe())
    return error


class TransportError(IozenError):
    """The request got no HTTP answer: refused, reset, dropped or timed out (after retries)."""


class MalformedResponse(IozenError):
    """The server answered with something that is not the documented JSON envelope."""


class WaitCeilingReached(IozenError):
    """Retrying further would wait past the policy's ceiling: checkpoint and stop."""

    def __init__(self, message: str, *, waited: float, next_wait: float, **where: Any) -> None:
        self.waited = waited
        self.next_wait = next_wait
        super().__init__(message, **where)


class BodyTooLarge(IozenError):
    """A request body over the API's 1 MB limit, refused before it was sent."""

    def __init__(self, message: str, *, size: int, limit: int, **where: Any) -> None:
        self.size = size
        self.limit = limit
        super().__init__(message, **where)


class ApiError(IozenError):
    """The server's error envelope: ``code``, ``message`` and ``details``."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        details: Mapping[str, Any] | None = None,
        **where: Any,
    ) -> None:
        self.code = code
        self.details: Mapping[str, Any] = details or {}
        super().__init__(message, **where)

    def _describe(self) -> str:
        return f"{self.code}: {super()._describe()}"


class AuthenticationRequired(ApiError):
    """401: the API key is missing or invalid."""


class ValidationFailed(ApiError):
    """400: the body, query or path did not validate; ``issues`` says where."""

    @property
    def issues(self) -> list[Mapping[str, Any]]:
        raw = self.details.get("issues")
        if not isinstance(raw, list):
            return []
        return [issue for issue in raw if isinstance(issue, Mapping)]

    @property
    def is_cursor_error(self) -> bool:
        """True when the server rejected the ``cursor`` (stale or unknown resume point)."""
        return any(_issue_path(issue)[:1] == ["cursor"] for issue in self.issues)


def _issue_path(issue: Mapping[str, Any]) -> list[Any]:
    path = issue.get("path")
    return list(path) if isinstance(path, Sequence) and not isinstance(path, str) else []


class InsufficientScopes(ApiError):
    """403: the key lacks a scope the endpoint needs."""

    @property
    def required(self) -> list[str]:
        return _strings(self.details.get("required"))

    @property
    def granted(self) -> list[str]:
        return _strings(self.details.get("granted"))

    def _describe(self) -> str:
        scopes = f"required {self.required}, granted {self.granted}"
        return f"{super()._describe()} ({scopes})"


class FeatureNotAvailable(ApiError):
    """403: the workspace's plan lacks the feature (e.g. webhooks on Pro)."""

    @property
    def feature(self) -> str | None:
        value = self.details.get("feature")
        return value if isinstance(value, str) else None


class WorkspaceArchived(ApiError):
    """403: the workspace has been archived."""


class ResourceNotFound(ApiError):
    """404: no such resource, or it belongs to another workspace."""

    @property
    def resource(self) -> str | None:
        value = self.details.get("resource")
        return value if isinstance(value, str) else None


class IdempotencyConflict(ApiError):
    """409: the Idempotency-Key was used before with another body; never retried."""


class RateLimitExceeded(ApiError):
    """429: the key's rate budget is spent (raised only once retries are exhausted)."""

    @property
    def retry_after(self) -> float | None:
        value = self.details.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None


class PlanLimitExceeded(ApiError):
    """429: the monthly plan quota for a resource is used up; never retried."""

    @property
    def resource(self) -> str | None:
        value = self.details.get("resource")
        return value if isinstance(value, str) else None

    @property
    def current(self) -> int | None:
        return _int(self.details.get("current"))

    @property
    def max(self) -> int | None:
        return _int(self.details.get("max"))

    def _describe(self) -> str:
        quota = f"{self.resource or 'quota'} {self.current} of {self.max}"
        return f"{super()._describe()} ({quota})"


class InternalError(ApiError):
    """500: an unhandled server-side failure (raised once retries are exhausted)."""


ERRORS_BY_CODE: dict[str, type[ApiError]] = {
    "authentication_required": AuthenticationRequired,
    "validation_failed": ValidationFailed,
    "insufficient_scopes": InsufficientScopes,
    "feature_not_available": FeatureNotAvailable,
    "workspace_archived": WorkspaceArchived,
    "resource_not_found": ResourceNotFound,
    "idempotency_conflict": IdempotencyConflict,
    "rate_limit_exceeded": RateLimitExceeded,
    "plan_limit_exceeded": PlanLimitExceeded,
    "internal_error": InternalError,
}


def _strings(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
