"""Webhook delivery: signed events, retries with backoff on the sandbox clock, disabling."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from iozen_etl.sandbox import Sandbox, SandboxConfig, signature, verify
from tests.support.sandbox import client_for

VALID = {"full_name": "Jane Doe", "email": "jane@example.com", "consent": True}


class Receiver:
    """Collects deliveries; answers with the statuses it is given, then 200."""

    def __init__(
        self, statuses: list[int] | None = None, fail: Callable[[], bool] | None = None
    ) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses = list(statuses or [])
        self.fail = fail

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail is not None and self.fail():
            raise httpx.ConnectError("connection refused", request=request)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status)


def sandbox_with(receiver: Receiver, **config: Any) -> Sandbox:
    return Sandbox(
        SandboxConfig(bots=1, submissions_per_bot=3, **config),
        webhook_transport=httpx.MockTransport(receiver),
    )


def register(sandbox: Sandbox, events: list[str]) -> dict[str, str]:
    with client_for(sandbox) as client:
        body = {"url": "https://receiver.example/hook", "events": events}
        hook: dict[str, str] = client.post("/webhooks", json=body).json()["data"]["webhook"]
        return hook


def create_submission(sandbox: Sandbox, status: str = "COMPLETED") -> str:
    with client_for(sandbox) as client:
        response = client.post(
            f"/intake-bots/{sandbox.bot_ids()[0]}/submissions",
            json={"data": VALID, "status": status},
        )
        submission_id: str = response.json()["data"]["submission"]["id"]
        return submission_id


@pytest.mark.parametrize("variant", ["body", "timestamp.body"])
def test_completed_submission_is_delivered_signed(variant: str) -> None:
    receiver = Receiver()
    sandbox = sandbox_with(receiver, webhook_signature=variant)
    hook = register(sandbox, ["submission.completed"])
    submission_id = create_submission(sandbox)
    create_submission(sandbox, status="IN_PROGRESS")  # only COMPLETED fires
    assert receiver.requests == []  # nothing is sent until deliveries are due and processed
    assert sandbox.deliver_due() == 1
    (request,) = receiver.requests
    body = request.content
    headers = request.headers
    assert headers["X-IoZen-Event-Type"] == "submission.completed"
    assert headers["X-IoZen-Event-Id"].startswith("evt_")
    assert headers["User-Agent"] == "ioZen-Webhooks/1.0"
    assert headers["Content-Type"] == "application/json"
    timestamp = int(headers["X-IoZen-Timestamp"])
    assert timestamp == int(sandbox.clock.now())
    assert headers["X-IoZen-Signature"] == signature(hook["secret"], body, timestamp, variant)
    now = sandbox.clock.now()
    assert verify(
        hook["secret"], body, headers["X-IoZen-Signature"], str(timestamp), now, variant=variant
    )
    assert not verify(
        "whsec_wrong", body, headers["X-IoZen-Signature"], str(timestamp), now, variant=variant
    )
    assert not verify(
        hook["secret"],
        body,
        headers["X-IoZen-Signature"],
        str(timestamp),
        now + 301,
        variant=variant,
    )
    payload = json.loads(body)
    assert payload["id"] == headers["X-IoZen-Event-Id"]
    assert payload["type"] == "submission.completed"
    submission = payload["data"]["submission"]
    assert submission["id"] == submission_id
    assert submission["intake_bot_id"] == sandbox.bot_ids()[0]
    assert submission["data"] == VALID and submission["status"] == "COMPLETED"
    state = sandbox.truth_webhooks()[0]
    assert state["last_delivery_ok"] is True and state["consecutive_fails"] == 0


def test_updates_and_status_changes_are_events() -> None:
    receiver = Receiver()
    sandbox = sandbox_with(receiver)
    register(sandbox, ["submission.updated", "submission.completed", "intake-bot.status-changed"])
    bot = sandbox.bot_ids()[0]
    submission_id = create_submission(sandbox, status="IN_PROGRESS")
    sandbox.update_submission(bot, submission_id, status="COMPLETED")
    sandbox.pause_bot(bot)
    sandbox.deliver_due()
    types = [r.headers["X-IoZen-Event-Type"] for r in receiver.requests]
    assert types == ["submission.completed", "submission.updated", "intake-bot.status-changed"]
    status_change = json.loads(receiver.requests[-1].content)["data"]["intake_bot"]
    assert status_change == {"id": bot, "status": "PAUSED", "previous_status": "ACTIVE"}


def test_failed_delivery_is_retried_with_exponential_backoff() -> None:
    receiver = Receiver(statuses=[500, 503, 404])
    sandbox = sandbox_with(receiver, webhook_retry_base_s=2.0)
    register(sandbox, ["submission.completed"])
    create_submission(sandbox)
    waits = []
    while len(receiver.requests) < 4:
        sandbox.deliver_due()
        pending = sandbox.pending_deliveries()
        if pending:
            waits.append(pending[0].due - sandbox.clock.now())
            sandbox.clock.advance(waits[-1])
    assert waits == [2.0, 4.0, 8.0]
    event_ids = {r.headers["X-IoZen-Event-Id"] for r in receiver.requests}
    assert len(event_ids) == 1  # retries carry the same event id
    attempts = [(record.attempt, record.ok, record.status) for record in sandbox.deliveries()]
    assert attempts == [(1, False, 500), (2, False, 503), (3, False, 404), (4, True, 200)]
    hook = sandbox.truth_webhooks()[0]
    assert hook["consecutive_fails"] == 0 and hook["last_delivery_ok"] is True


def test_ten_consecutive_failures_disable_the_endpoint() -> None:
    receiver = Receiver(fail=lambda: True)
    sandbox = sandbox_with(receiver)
    register(sandbox, ["submission.completed"])
    create_submission(sandbox)
    for _ in range(20):
        sandbox.deliver_due()
        sandbox.clock.advance(3600)
    hook = sandbox.truth_webhooks()[0]
    assert len(receiver.requests) == 10
    assert hook["status"] == "disabled" and hook["consecutive_fails"] == 10
    assert hook["last_delivery_ok"] is False
    assert all(record.error == "ConnectError" for record in sandbox.deliveries())
    create_submission(sandbox)
    sandbox.deliver_due()
    assert len(receiver.requests) == 10  # a disabled endpoint receives nothing


def test_deleted_webhook_gets_no_more_deliveries() -> None:
    receiver = Receiver()
    sandbox = sandbox_with(receiver)
    hook = register(sandbox, ["submission.completed"])
    create_submission(sandbox)
    with client_for(sandbox) as client:
        client.delete(f"/webhooks/{hook['id']}")
    assert sandbox.deliver_due() == 0 and receiver.requests == []


def test_unsubscribed_events_are_not_sent() -> None:
    receiver = Receiver()
    sandbox = sandbox_with(receiver)
    register(sandbox, ["contact.created"])
    create_submission(sandbox)
    sandbox.generate_submissions(sandbox.bot_ids()[0], 3, status="COMPLETED")
    assert sandbox.deliver_due() == 0


def test_delivery_routes_under_sandbox() -> None:
    receiver = Receiver(statuses=[500])
    sandbox = sandbox_with(receiver)
    hook = register(sandbox, ["submission.completed"])
    create_submission(sandbox)
    with httpx.Client(transport=httpx.WSGITransport(app=sandbox), base_url="http://s") as admin:
        assert admin.post("/_sandbox/deliver").json()["data"] == {"attempted": 1}
        assert admin.post("/_sandbox/deliver").json()["data"] == {"attempted": 0}  # not due yet
        admin.post("/_sandbox/advance", json={"seconds": 1})
        assert admin.post("/_sandbox/deliver").json()["data"] == {"attempted": 1}
        log = admin.get("/_sandbox/deliveries").json()["data"]
        hooks = admin.get("/_sandbox/truth/webhooks").json()["data"]
    assert [(entry["attempt"], entry["ok"], entry["status"]) for entry in log] == [
        (1, False, 500),
        (2, True, 200),
    ]
    assert hooks[0]["id"] == hook["id"] and hooks[0]["last_delivery_ok"] is True
