"""Retries: 429 waits by server hints, faults back off with jitter, POSTs repeat only with a key."""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
import pytest

from iozen_etl.api import (
    IdempotencyConflict,
    InternalError,
    MalformedResponse,
    PlanLimitExceeded,
    RateLimitExceeded,
    RetryPolicy,
    TransportError,
    WaitCeilingReached,
)
from iozen_etl.api.retry import rate_limit_hint
from tests.support.clock import WALL_START, FakeTime
from tests.support.wire import fail, mock_client, ok, page, submission, webhook

NO_JITTER = RetryPolicy(rate_limit_jitter=0.0)


def scripted(*answers: Callable[[httpx.Request], httpx.Response]):
    """A handler giving each answer in turn (the last one repeats); keeps the requests it saw."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1](request)

    return handler, seen


def listing(request: httpx.Request) -> httpx.Response:
    return ok(page("submissions", [submission(1)], None))


def created(request: httpx.Request) -> httpx.Response:
    return ok(
        {"submission": {"id": "s1", "status": "COMPLETED", "created_at": "2026-03-01T00:00:00Z"}}
    )


def hook_created(request: httpx.Request) -> httpx.Response:
    return ok({"webhook": webhook(1, secret="whsec_1")})


def limited_body_12(request: httpx.Request) -> httpx.Response:
    return fail(429, "rate_limit_exceeded", {"retry_after": 12})


def limited_header_7(request: httpx.Request) -> httpx.Response:
    response = fail(429, "rate_limit_exceeded", {})
    response.headers["Retry-After"] = "7"
    return response


def limited_header_zero(request: httpx.Request) -> httpx.Response:
    response = fail(429, "rate_limit_exceeded", {})
    response.headers["Retry-After"] = "0"
    return response


def limited_reset_only(request: httpx.Request) -> httpx.Response:
    response = fail(429, "rate_limit_exceeded", None)
    # FakeTime starts at 1000 s on the monotonic clock, so the wall clock reads WALL_START + 1000.
    response.headers["X-RateLimit-Reset"] = str(int((WALL_START + 1000 + 4.5) * 1000))
    return response


def limited_no_hint(request: httpx.Request) -> httpx.Response:
    return fail(429, "rate_limit_exceeded", {})


def server_error(request: httpx.Request) -> httpx.Response:
    return fail(500, "internal_error", {})


def bad_gateway_html(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        502, text="<html><body>502</body></html>", headers={"content-type": "text/html"}
    )


def dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError(
        "Server disconnected without sending a response.", request=request
    )


def timed_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def truncated_json(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b'{"success": true, "data": {"submissions": [{"id": "s')


def html_200(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="<!doctype html><title>Maintenance</title>")


def no_envelope(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"data": {"submissions": []}})


def conflict(request: httpx.Request) -> httpx.Response:
    return fail(409, "idempotency_conflict")


def quota(request: httpx.Request) -> httpx.Response:
    return fail(429, "plan_limit_exceeded", {"resource": "submissions", "current": 10, "max": 10})


@pytest.mark.parametrize(
    ("answer", "expected_wait"),
    [
        (limited_body_12, 12.0),  # body details.retry_after wins
        (limited_header_7, 7.0),  # Retry-After header when the body has none
        (limited_reset_only, 4.5),  # X-RateLimit-Reset (Unix ms) when neither is sent
        (limited_header_zero, 1.0),  # Retry-After: 0 waits the floor, never spins
    ],
)
def test_429_waits_by_the_first_server_hint(answer, expected_wait) -> None:
    handler, _ = scripted(answer, listing)
    time = FakeTime()
    with mock_client(handler, time, NO_JITTER) as client:
        result = client.list_submissions_page("bot001")
    assert [s.id for s in result.items] == ["sub0001"]
    assert time.sleeps == [pytest.approx(expected_wait)]
    assert client.stats.throttled == 1 and client.stats.retries == 1


def test_429_body_hint_beats_header() -> None:
    headers = httpx.Headers({"Retry-After": "30", "X-RateLimit-Reset": "0"})
    assert rate_limit_hint({"retry_after": 2}, headers, WALL_START) == 2.0
    assert rate_limit_hint({}, headers, WALL_START) == 30.0
    date = httpx.Headers({"Retry-After": "Thu, 01 Jan 2030 00:00:10 GMT"})
    assert rate_limit_hint(None, date, 1893456000.0) == 10.0
    assert rate_limit_hint(None, httpx.Headers({"Retry-After": "soon"}), WALL_START) is None


def test_429_without_any_hint_uses_its_own_backoff_above_the_floor() -> None:
    handler, _ = scripted(limited_no_hint, limited_no_hint, listing)
    time = FakeTime()
    policy = RetryPolicy(rate_limit_jitter=0.0, rate_limit_floor=1.0, base_delay=4.0)
    with mock_client(handler, time, policy) as client:
        client.list_submissions_page("bot001")
    assert len(time.sleeps) == 2
    assert all(1.0 <= wait <= 8.0 for wait in time.sleeps)


def test_429_pauses_the_shared_budget_for_every_other_request() -> None:
    handler, _ = scripted(limited_body_12, listing)
    time = FakeTime()
    once = RetryPolicy(max_attempts=1, max_throttled=0, rate_limit_jitter=0.0)
    with mock_client(handler, time, once) as client:
        with pytest.raises(RateLimitExceeded):
            client.list_submissions_page("bot001")
        assert client.budget.delay() == pytest.approx(12.0)
        client.list_submissions_page("bot001")  # the next request waits the pause out first
    assert time.sleeps == [pytest.approx(12.0)] and client.stats.seconds_paced == 12.0


def test_persistent_429_gives_up_with_rate_limit_exceeded() -> None:
    handler, seen = scripted(limited_body_12)
    policy = RetryPolicy(max_throttled=2, rate_limit_jitter=0.0)
    with mock_client(handler, retry=policy) as client, pytest.raises(RateLimitExceeded) as caught:
        client.list_submissions_page("bot001")
    assert len(seen) == 3 and caught.value.retry_after == 12.0


@pytest.mark.parametrize(
    "fault",
    [server_error, bad_gateway_html, dropped, timed_out, truncated_json, html_200, no_envelope],
)
def test_faults_on_a_get_are_retried_with_capped_full_jitter(fault) -> None:
    handler, seen = scripted(fault, fault, fault, listing)
    time = FakeTime()
    policy = RetryPolicy(base_delay=1.0, max_delay=3.0)
    with mock_client(handler, time, policy) as client:
        client.list_submissions_page("bot001")
    assert len(seen) == 4
    # retry n waits uniformly within [0, min(cap, base * 2**n)]: 1, 2, then capped at 3
    assert [wait <= bound for wait, bound in zip(time.sleeps, [1.0, 2.0, 3.0], strict=True)] == [
        True
    ] * 3
    assert sum(client.stats.errors_by_kind.values()) == 3


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    rng = random.Random(1)
    waits = [policy.backoff(10, rng) for _ in range(2000)]
    assert max(waits) <= 30.0 and min(waits) < 1.0 and max(waits) > 29.0


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (server_error, InternalError),
        (bad_gateway_html, MalformedResponse),
        (dropped, TransportError),
        (timed_out, TransportError),
        (truncated_json, MalformedResponse),
        (html_200, MalformedResponse),
    ],
)
def test_after_the_last_attempt_the_fault_is_raised(fault, error) -> None:
    handler, seen = scripted(fault)
    with (
        mock_client(handler, retry=RetryPolicy(max_attempts=3)) as client,
        pytest.raises(error) as caught,
    ):
        client.get_submission("bot001", "sub0001")
    assert len(seen) == 3
    assert "GET /intake-bots/bot001/submissions/sub0001" in str(caught.value)


def test_the_wait_ceiling_stops_retrying_with_a_distinct_error() -> None:
    handler, seen = scripted(limited_body_12)
    policy = RetryPolicy(max_attempts=50, max_total_wait=30.0, rate_limit_jitter=0.0)
    time = FakeTime()
    with mock_client(handler, time, policy) as client, pytest.raises(WaitCeilingReached) as caught:
        client.list_submissions_page("bot001")
    assert time.sleeps == [12.0, 12.0]  # a third 12 s wait would pass 30 s
    assert caught.value.waited == 24.0 and caught.value.next_wait == 12.0
    assert isinstance(caught.value.__cause__, RateLimitExceeded)
    assert caught.value.status == 429 and len(seen) == 3


def test_submission_retries_reuse_one_generated_idempotency_key() -> None:
    handler, seen = scripted(server_error, dropped, timed_out, truncated_json, created)
    with mock_client(handler) as client:
        result = client.create_submission("bot001", {"full_name": "Jane"})
    keys = {request.headers["Idempotency-Key"] for request in seen}
    assert len(seen) == 5 and len(keys) == 1 and result.id == "s1"
    assert {request.content for request in seen} == {b'{"data":{"full_name":"Jane"}}'}


def test_each_submission_call_gets_its_own_key() -> None:
    handler, seen = scripted(created)
    with mock_client(handler) as client:
        client.create_submission("bot001", {"a": 1})
        client.create_submission("bot001", {"a": 1})
    assert seen[0].headers["Idempotency-Key"] != seen[1].headers["Idempotency-Key"]


def test_caller_key_is_sent_on_every_retry() -> None:
    handler, seen = scripted(server_error, created)
    with mock_client(handler) as client:
        client.create_submission("bot001", {"a": 1}, idempotency_key="row-42")
    assert [r.headers["Idempotency-Key"] for r in seen] == ["row-42", "row-42"]


@pytest.mark.parametrize(
    ("answer", "error"), [(conflict, IdempotencyConflict), (quota, PlanLimitExceeded)]
)
def test_conflict_and_quota_are_never_retried(answer, error) -> None:
    handler, seen = scripted(answer)
    time = FakeTime()
    with mock_client(handler, time) as client, pytest.raises(error):
        client.create_submission("bot001", {"a": 1}, idempotency_key="k")
    assert len(seen) == 1 and time.sleeps == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (server_error, InternalError),
        (dropped, TransportError),
        (timed_out, TransportError),
        (truncated_json, MalformedResponse),
    ],
)
def test_a_post_without_a_key_is_never_retried_on_ambiguous_failures(fault, error) -> None:
    handler, seen = scripted(fault, hook_created)
    with mock_client(handler) as client, pytest.raises(error):
        client.create_webhook("https://hooks.example.com/x", ["submission.completed"])
    assert len(seen) == 1


def test_a_post_without_a_key_is_retried_when_it_never_reached_the_server() -> None:
    handler, seen = scripted(refused, limited_body_12, hook_created)
    with mock_client(handler) as client:
        hook = client.create_webhook("https://hooks.example.com/x", ["submission.completed"])
    assert len(seen) == 3 and hook.secret == "whsec_1"


def test_a_webhook_post_with_a_key_is_retried() -> None:
    handler, seen = scripted(server_error, hook_created)
    with mock_client(handler) as client:
        client.create_webhook("https://hooks.example.com/x", ["a"], idempotency_key="wh-1")
    assert [r.headers["Idempotency-Key"] for r in seen] == ["wh-1", "wh-1"]


def replayed(request: httpx.Request) -> httpx.Response:
    response = created(request)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def test_replayed_header_is_reported() -> None:
    handler, _ = scripted(replayed)
    with mock_client(handler) as client:
        assert client.create_submission("bot001", {"a": 1}, idempotency_key="k").replayed is True
