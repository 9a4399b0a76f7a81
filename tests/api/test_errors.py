"""Each documented error code maps to its class, names the request, and never shows the key."""

from __future__ import annotations

import logging
import pickle

import httpx
import pytest

from iozen_etl.api import (
    ApiError,
    AuthenticationRequired,
    FeatureNotAvailable,
    IdempotencyConflict,
    InsufficientScopes,
    InternalError,
    IozenError,
    MalformedResponse,
    PlanLimitExceeded,
    RateLimitExceeded,
    ResourceNotFound,
    RetryPolicy,
    TransportError,
    ValidationFailed,
    WaitCeilingReached,
    WorkspaceArchived,
)
from tests.support.clock import FakeTime
from tests.support.wire import API_KEY, fail, mock_client

ONE_TRY = RetryPolicy(max_attempts=1, max_throttled=0)

# (status, code, details, class, attribute checks)
CASES = [
    (401, "authentication_required", {}, AuthenticationRequired, {}),
    (
        400,
        "validation_failed",
        {"issues": [{"path": ["limit"], "message": "bad", "code": "x"}]},
        ValidationFailed,
        {"is_cursor_error": False},
    ),
    (400, "validation_failed", None, ValidationFailed, {"issues": []}),  # details omitted (#11)
    (
        403,
        "insufficient_scopes",
        {"required": ["read:submissions"], "granted": ["read:intake-bots"]},
        InsufficientScopes,
        {"required": ["read:submissions"], "granted": ["read:intake-bots"]},
    ),
    (
        403,
        "feature_not_available",
        {"feature": "webhooks"},
        FeatureNotAvailable,
        {"feature": "webhooks"},
    ),
    (403, "workspace_archived", {}, WorkspaceArchived, {}),
    (
        404,
        "resource_not_found",
        {"resource": "intake_bot"},
        ResourceNotFound,
        {"resource": "intake_bot"},
    ),
    (
        404,
        "resource_not_found",
        None,
        ResourceNotFound,
        {"resource": None},
    ),  # details missing (#12)
    (409, "idempotency_conflict", None, IdempotencyConflict, {}),
    (429, "rate_limit_exceeded", {"retry_after": 3}, RateLimitExceeded, {"retry_after": 3.0}),
    (
        429,
        "plan_limit_exceeded",
        {"resource": "submissions", "current": 1000, "max": 1000},
        PlanLimitExceeded,
        {"resource": "submissions", "current": 1000, "max": 1000},
    ),
    (500, "internal_error", {}, InternalError, {}),
    (418, "brand_new_code", {}, ApiError, {}),
]


@pytest.mark.parametrize(("status", "code", "details", "cls", "attrs"), CASES)
def test_error_codes_map_to_classes(status, code, details, cls, attrs) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return fail(status, code, details, request_id="req_abcdefabcdefabcdefabcdef")

    with mock_client(handler, retry=ONE_TRY) as client, pytest.raises(cls) as caught:
        client.list_intake_bots_page()
    error = caught.value
    assert type(error) is cls
    assert (error.code, error.status, error.method, error.path) == (
        code,
        status,
        "GET",
        "/intake-bots",
    )
    for name, value in attrs.items():
        assert getattr(error, name) == value
    text = str(error)
    for part in ("GET /intake-bots", f"HTTP {status}", "req_abcdefabcdefabcdefabcdef", code):
        assert part in text


def test_plan_limit_and_scopes_name_their_numbers() -> None:
    plan = PlanLimitExceeded(
        "quota",
        code="plan_limit_exceeded",
        details={"resource": "submissions", "current": 5, "max": 5},
    )
    assert "submissions 5 of 5" in str(plan)
    scopes = InsufficientScopes(
        "no", code="insufficient_scopes", details={"required": ["a"], "granted": ["b"]}
    )
    assert "required ['a'], granted ['b']" in str(scopes)


def cursor_rejected(request: httpx.Request) -> httpx.Response:
    issue = {"path": ["cursor"], "message": "Unknown cursor", "code": "invalid_string"}
    return fail(400, "validation_failed", {"issues": [issue]})


def test_rejected_cursor_is_flagged_and_not_retried() -> None:
    time = FakeTime()
    with mock_client(cursor_rejected, time) as client, pytest.raises(ValidationFailed) as caught:
        client.list_submissions_page("bot001", cursor="stale")
    assert caught.value.is_cursor_error
    assert client.stats.requests == 1 and time.sleeps == []


def every_failure(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/refused"):
        raise httpx.ConnectError("connection refused", request=request)
    if request.url.path.endswith("/html"):
        return httpx.Response(
            502, text="<html>Bad gateway</html>", headers={"content-type": "text/html"}
        )
    return fail(401, "authentication_required", {})


def error_chain(error: BaseException | None) -> list[BaseException]:
    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


@pytest.mark.parametrize("path", ["/refused", "/html", "/unauthorised"])
def test_no_error_repr_args_cause_or_log_line_shows_the_key(path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    policy = RetryPolicy(max_attempts=3)
    with mock_client(every_failure, retry=policy) as client, pytest.raises(IozenError) as caught:
        client.get_webhook(path.strip("/"))
    for error in error_chain(caught.value):
        for shown in (str(error), repr(error), repr(error.args)):
            assert API_KEY not in shown
            assert "SECRET" not in shown
    assert caplog.records, "retries are logged"
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
    assert API_KEY not in caplog.text


def test_errors_without_request_id_or_status_still_read_well() -> None:
    error = TransportError("timeout (ReadTimeout: timed out)", method="GET", path="/webhooks")
    assert (
        str(error)
        == "timeout (ReadTimeout: timed out) [GET /webhooks: no response, request id none]"
    )
    ceiling = WaitCeilingReached("stop", waited=10.0, next_wait=5.0, method="GET", path="/x")
    assert isinstance(ceiling, IozenError) and ceiling.next_wait == 5.0
    assert isinstance(MalformedResponse("x"), IozenError)


def test_errors_survive_pickling_with_their_fields() -> None:
    original = PlanLimitExceeded(
        "quota",
        code="plan_limit_exceeded",
        details={"resource": "submissions", "current": 3, "max": 3},
        method="POST",
        path="/intake-bots/b/submissions",
        status=429,
        request_id="req_1",
    )
    ceiling = WaitCeilingReached("stop", waited=1.0, next_wait=2.0, method="GET", path="/x")
    for error in (original, ceiling):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
    assert pickle.loads(pickle.dumps(original)).max == 3
