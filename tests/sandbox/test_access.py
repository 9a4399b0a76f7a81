"""Keys, scopes, plans, the archived workspace and the per-key sliding-window rate limit."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from iozen_etl.sandbox import Sandbox, SandboxConfig
from tests.support.sandbox import SANDBOX_URL, client_for, error_of


def test_default_key_has_documented_format(sandbox: Sandbox) -> None:
    assert re.fullmatch(r"iozen_live_[A-Za-z0-9]{32}", sandbox.api_key)
    assert sandbox.api_key not in repr(sandbox)


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer iozen_live_wrong", "Basic abc", "iozen_live_x"]
)
def test_missing_or_invalid_key_is_401(sandbox: Sandbox, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with client_for(sandbox, key="") as client:
        response = client.get("/intake-bots", headers=headers)
    assert response.status_code == 401
    error = error_of(response)
    assert error == {
        "code": "authentication_required",
        "message": "Missing or invalid API key",
        "details": {},
    }
    assert response.headers["X-RateLimit-Limit"] == "500"


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/intake-bots", "read:intake-bots"),
        ("GET", "/intake-bots/{bot}", "read:intake-bots"),
        ("GET", "/intake-bots/{bot}/submissions", "read:submissions"),
        ("GET", "/intake-bots/{bot}/submissions/x", "read:submissions"),
        ("POST", "/intake-bots/{bot}/submissions", "write:intake-bots"),
        ("GET", "/webhooks", "manage:webhooks"),
        ("POST", "/webhooks", "manage:webhooks"),
        ("GET", "/webhooks/x", "manage:webhooks"),
        ("DELETE", "/webhooks/x", "manage:webhooks"),
    ],
)
def test_each_route_needs_its_scope(sandbox: Sandbox, method: str, path: str, scope: str) -> None:
    granted = ["read:contacts", "read:records"]
    key = sandbox.add_key(granted)
    with client_for(sandbox, key) as client:
        response = client.request(method, path.format(bot=sandbox.bot_ids()[0]), json={})
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "insufficient_scopes"
    assert error["details"] == {"required": [scope], "granted": granted}
    with client_for(sandbox, sandbox.add_key([scope])) as client:
        allowed = client.request(method, path.format(bot=sandbox.bot_ids()[0]), json={})
    assert allowed.status_code != 403


def test_webhooks_are_not_available_on_pro(sandbox: Sandbox) -> None:
    key = sandbox.add_key(["manage:webhooks", "read:intake-bots"], plan="pro")
    with client_for(sandbox, key) as client:
        for method, path in (
            ("GET", "/webhooks"),
            ("POST", "/webhooks"),
            ("DELETE", "/webhooks/x"),
        ):
            response = client.request(method, path, json={})
            assert response.status_code == 403
            error = error_of(response)
            assert error["code"] == "feature_not_available"
            assert error["details"] == {"feature": "webhooks"}
        bots = client.get("/intake-bots")
    assert bots.status_code == 200
    assert bots.headers["X-RateLimit-Limit"] == "100"  # the pro plan's limit


def test_archived_workspace_is_403() -> None:
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=1, workspace_archived=True))
    with client_for(sandbox) as client:
        response = client.get("/intake-bots")
    assert response.status_code == 403
    assert error_of(response)["code"] == "workspace_archived"


def limited(**config: Any) -> Sandbox:
    return Sandbox(
        SandboxConfig(bots=1, submissions_per_bot=1, rate_limit=3, window_s=10.0, **config)
    )


def test_rate_limit_counts_per_key_and_429_is_not_counted() -> None:
    sandbox = limited()
    now_ms = int(sandbox.clock.now() * 1000)
    with client_for(sandbox) as client:
        remaining = [client.get("/intake-bots").headers["X-RateLimit-Remaining"] for _ in range(3)]
        assert remaining == ["2", "1", "0"]
        refused = client.get("/intake-bots")
        assert refused.status_code == 429
        error = error_of(refused)
        assert error["code"] == "rate_limit_exceeded"
        assert error["details"] == {"retry_after": 10}
        assert "Retry-After" not in refused.headers
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert int(refused.headers["X-RateLimit-Reset"]) == now_ms + 10_000
        for _ in range(5):  # refused requests do not push the window out
            assert client.get("/intake-bots").status_code == 429
        with client_for(sandbox, sandbox.add_key(["read:intake-bots"])) as other:
            assert other.get("/intake-bots").status_code == 200  # each key has its own budget
        sandbox.clock.advance(10)
        assert client.get("/intake-bots").status_code == 200


def test_sliding_window_reset_is_when_the_oldest_request_leaves() -> None:
    sandbox = limited()
    start = sandbox.clock.now()
    with client_for(sandbox) as client:
        client.get("/intake-bots")
        sandbox.clock.advance(4)
        client.get("/intake-bots")
        sandbox.clock.advance(4)
        client.get("/intake-bots")
        refused = client.get("/intake-bots")
        assert error_of(refused)["details"]["retry_after"] == 2
        assert int(refused.headers["X-RateLimit-Reset"]) == int((start + 10) * 1000)
        sandbox.clock.advance(2)  # the first request leaves the window: one slot frees up
        assert client.get("/intake-bots").headers["X-RateLimit-Remaining"] == "0"
        assert client.get("/intake-bots").status_code == 429


def test_errors_count_and_carry_headers() -> None:
    sandbox = limited()
    with client_for(sandbox) as client:
        assert client.get("/intake-bots/missing").headers["X-RateLimit-Remaining"] == "2"
        assert (
            client.get("/intake-bots", params={"limit": 0}).headers["X-RateLimit-Remaining"] == "1"
        )


@pytest.mark.parametrize(
    ("config", "body_details", "header"),
    [
        ({"retry_after_in_body": False}, {}, None),
        ({"retry_after_header": True}, {"retry_after": 10}, "10"),
        ({"retry_after_header": True, "retry_after_zero": True}, {"retry_after": 0}, "0"),
    ],
)
def test_retry_after_switches(
    config: dict[str, bool], body_details: dict[str, int], header: str | None
) -> None:
    sandbox = limited(**config)
    with client_for(sandbox) as client:
        for _ in range(3):
            client.get("/intake-bots")
        refused = client.get("/intake-bots")
    assert error_of(refused)["details"] == body_details
    assert refused.headers.get("Retry-After") == header


def test_plan_rate_limits_are_the_defaults() -> None:
    pro = Sandbox(SandboxConfig(bots=1, submissions_per_bot=0, plan="pro"))
    with httpx.Client(
        transport=httpx.WSGITransport(app=pro),
        base_url=SANDBOX_URL,
        headers={"Authorization": f"Bearer {pro.api_key}"},
    ) as client:
        assert client.get("/intake-bots").headers["X-RateLimit-Limit"] == "100"
        assert client.get("/webhooks").status_code == 403
