"""POST bodies: validation against the schema, the 1 MB limit, idempotency, quotas."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from iozen_etl.sandbox import Sandbox, SandboxConfig
from tests.support.sandbox import client_for, error_of

VALID = {"full_name": "Jane Doe", "email": "jane@example.com", "consent": True}


@pytest.fixture
def onboarding(sandbox: Sandbox) -> str:
    return sandbox.bot_ids()[0]  # Customer Onboarding: every field type


def post(client: httpx.Client, bot: str, body: Any, **headers: str) -> httpx.Response:
    return client.post(f"/intake-bots/{bot}/submissions", json=body, headers=headers)


def issues_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_failed"
    issues: list[dict[str, Any]] = error["details"]["issues"]
    assert all(set(issue) == {"path", "message", "code"} for issue in issues)
    return issues


def test_every_field_type_accepts_its_values(
    sandbox: Sandbox, client: httpx.Client, onboarding: str
) -> None:
    data = {
        **VALID,
        "company": "株式会社サンプル",
        "phone": "+1 415 555 0100",
        "website": "https://example.com",
        "team_size": 12.5,
        "start_date": "2026-07-01",
        "priority": "high",
        "products": ["crm", "api"],
        "notes": "🎉" * 1000,
        "contract": ["a.pdf", "b.pdf"],
        "utm_source": None,
    }
    response = post(client, onboarding, {"data": data, "status": "COMPLETED", "is_test": True})
    assert response.status_code == 200
    created = response.json()["data"]["submission"]
    stored = next(s for s in sandbox.truth_submissions(onboarding) if s["id"] == created["id"])
    assert (stored["data"], stored["status"], stored["is_test"]) == (data, "COMPLETED", True)


@pytest.mark.parametrize(
    ("answers", "path", "code"),
    [
        ({"nickname": "x"}, ["data", "nickname"], "unrecognized_keys"),
        ({"welcome": "hi"}, ["data", "welcome"], "content_block"),
        ({"team_size": "12"}, ["data", "team_size"], "invalid_type"),
        ({"team_size": True}, ["data", "team_size"], "invalid_type"),
        ({"consent": "yes"}, ["data", "consent"], "invalid_type"),
        ({"email": "not-an-email"}, ["data", "email"], "invalid_type"),
        ({"priority": "urgent"}, ["data", "priority"], "invalid_type"),
        ({"products": ["crm", "nope"]}, ["data", "products"], "invalid_type"),
        ({"products": "crm"}, ["data", "products"], "invalid_type"),
        ({"start_date": "yesterday"}, ["data", "start_date"], "invalid_type"),
        ({"full_name": ["a"]}, ["data", "full_name"], "invalid_type"),
        ({"contract": 3}, ["data", "contract"], "invalid_type"),
    ],
)
def test_bad_answers_are_named(
    client: httpx.Client, onboarding: str, answers: dict[str, Any], path: list[str], code: str
) -> None:
    issues = issues_of(post(client, onboarding, {"data": {**VALID, **answers}}))
    assert [(i["path"], i["code"]) for i in issues] == [(path, code)]


def test_required_fields_only_for_completed(client: httpx.Client, onboarding: str) -> None:
    issues = issues_of(post(client, onboarding, {"data": {"full_name": "X"}}))
    assert {tuple(i["path"]) for i in issues} == {("data", "email"), ("data", "consent")}
    in_progress = post(client, onboarding, {"data": {"full_name": "X"}, "status": "IN_PROGRESS"})
    assert in_progress.status_code == 200


def test_required_check_can_be_switched_off() -> None:
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=0, enforce_required=False))
    with client_for(sandbox) as client:
        assert post(client, sandbox.bot_ids()[0], {"data": {}}).status_code == 200


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ([], []),
        ("text", []),
        ({}, ["data"]),
        ({"data": []}, ["data"]),
        ({"data": {}, "status": "DONE", "is_test": True}, ["status"]),
        ({"data": {}, "status": "IN_PROGRESS", "is_test": "no"}, ["is_test"]),
    ],
)
def test_bad_bodies_are_400(
    client: httpx.Client, onboarding: str, body: Any, path: list[str]
) -> None:
    assert issues_of(post(client, onboarding, body))[0]["path"] == path


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe", b'{"data": NaN'])
def test_non_json_bodies_are_400(client: httpx.Client, onboarding: str, raw: bytes) -> None:
    for path in (f"/intake-bots/{onboarding}/submissions", "/webhooks"):
        response = client.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert issues_of(response)[0]["code"] == "invalid_json"


def test_body_over_one_megabyte_is_refused(client: httpx.Client, onboarding: str) -> None:
    envelope = json.dumps({"data": {**VALID, "notes": ""}, "status": "COMPLETED"})
    padding = 1_048_576 - len(envelope)
    at_limit = envelope.replace('"notes": ""', '"notes": "' + "x" * padding + '"')
    assert len(at_limit.encode()) == 1_048_576
    path = f"/intake-bots/{onboarding}/submissions"
    assert client.post(path, content=at_limit).status_code == 200
    over = at_limit.replace('"notes": "', '"notes": "y')
    issues = issues_of(client.post(path, content=over))
    assert issues[0]["code"] == "too_big"


def test_paused_bot_refuses_submissions_unless_configured(
    sandbox: Sandbox, onboarding: str
) -> None:
    sandbox.pause_bot(onboarding)
    with client_for(sandbox) as client:
        assert issues_of(post(client, onboarding, {"data": VALID}))[0]["code"] == "bot_paused"
    lenient = Sandbox(SandboxConfig(bots=1, submissions_per_bot=0, paused_bot_accepts=True))
    lenient.pause_bot(lenient.bot_ids()[0])
    with client_for(lenient) as client:
        assert post(client, lenient.bot_ids()[0], {"data": VALID}).status_code == 200


def test_plan_quota_gives_plan_limit_exceeded() -> None:
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=5, submission_quota=2))
    bot = sandbox.bot_ids()[0]
    with client_for(sandbox) as client:
        assert post(client, bot, {"data": VALID}).status_code == 200
        assert post(client, bot, {"data": VALID}).status_code == 200
        refused = post(client, bot, {"data": VALID})
    assert refused.status_code == 429
    error = error_of(refused)
    assert error["code"] == "plan_limit_exceeded"
    assert error["details"] == {"resource": "submissions", "current": 2, "max": 2}
    assert len(sandbox.truth_submissions(bot)) == 7


# idempotency --------------------------------------------------------------------------------


def test_same_key_same_body_replays_the_stored_answer(
    sandbox: Sandbox, client: httpx.Client, onboarding: str
) -> None:
    first = post(client, onboarding, {"data": VALID}, **{"Idempotency-Key": "row-1"})
    # Same JSON, different key order and spacing: still the same body.
    same = json.dumps({"data": dict(reversed(VALID.items()))}, indent=2)
    again = client.post(
        f"/intake-bots/{onboarding}/submissions", content=same, headers={"Idempotency-Key": "row-1"}
    )
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]
    created = first.json()["data"]["submission"]["id"]
    assert [s["id"] for s in sandbox.truth_submissions(onboarding)].count(created) == 1
    assert sandbox.request_count("create_submission", "POST") == 2


def test_same_key_different_body_is_409(client: httpx.Client, onboarding: str) -> None:
    post(client, onboarding, {"data": VALID}, **{"Idempotency-Key": "row-2"})
    conflict = post(
        client,
        onboarding,
        {"data": {**VALID, "full_name": "Other"}},
        **{"Idempotency-Key": "row-2"},
    )
    assert conflict.status_code == 409
    assert error_of(conflict) == {
        "code": "idempotency_conflict",
        "message": "Idempotency key was already used with a different request body",
        "details": {},
    }


def test_key_scope_is_api_key_method_and_path(sandbox: Sandbox, onboarding: str) -> None:
    other_bot = sandbox.bot_ids()[5]  # also Customer Onboarding
    other_key = sandbox.add_key(["write:intake-bots"])
    with client_for(sandbox) as client, client_for(sandbox, other_key) as other:
        first = post(client, onboarding, {"data": VALID}, **{"Idempotency-Key": "k"})
        elsewhere = post(client, other_bot, {"data": VALID}, **{"Idempotency-Key": "k"})
        other_api_key = post(other, onboarding, {"data": VALID}, **{"Idempotency-Key": "k"})
    ids = {r.json()["data"]["submission"]["id"] for r in (first, elsewhere, other_api_key)}
    assert len(ids) == 3


def test_idempotency_keys_expire_after_24_hours(
    sandbox: Sandbox, client: httpx.Client, onboarding: str
) -> None:
    first = post(client, onboarding, {"data": VALID}, **{"Idempotency-Key": "row-3"})
    sandbox.clock.advance(86_399)
    assert (
        post(client, onboarding, {"data": VALID}, **{"Idempotency-Key": "row-3"}).json()
        == first.json()
    )
    sandbox.clock.advance(1)
    fresh = post(
        client, onboarding, {"data": {**VALID, "full_name": "New"}}, **{"Idempotency-Key": "row-3"}
    )
    assert fresh.status_code == 200
    assert fresh.json()["data"]["submission"]["id"] != first.json()["data"]["submission"]["id"]


def test_validation_failures_replay_too(client: httpx.Client, onboarding: str) -> None:
    first = post(client, onboarding, {"data": {"bogus": 1}}, **{"Idempotency-Key": "bad"})
    again = post(client, onboarding, {"data": {"bogus": 1}}, **{"Idempotency-Key": "bad"})
    assert first.status_code == again.status_code == 400
    assert again.headers["Idempotent-Replayed"] == "true"


def test_rate_limited_posts_are_not_stored() -> None:
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=0, rate_limit=1))
    bot = sandbox.bot_ids()[0]
    with client_for(sandbox) as client:
        client.get("/intake-bots")
        assert post(client, bot, {"data": VALID}, **{"Idempotency-Key": "r"}).status_code == 429
        sandbox.clock.advance(60)
        created = post(client, bot, {"data": VALID}, **{"Idempotency-Key": "r"})
    assert created.status_code == 200 and "Idempotent-Replayed" not in created.headers


def test_webhook_creation_is_idempotent_and_validated(client: httpx.Client) -> None:
    body = {"url": "https://h.example/x", "events": ["submission.completed"]}
    first = client.post("/webhooks", json=body, headers={"Idempotency-Key": "w"})
    again = client.post("/webhooks", json=body, headers={"Idempotency-Key": "w"})
    assert again.json() == first.json()
    assert len(client.get("/webhooks").json()["data"]["webhooks"]) == 1
    cases = [
        ({"events": ["submission.completed"]}, ["url"]),
        ({"url": "http://h.example/x", "events": ["submission.completed"]}, ["url"]),
        ({"url": "not a url", "events": ["submission.completed"]}, ["url"]),
        ({"url": "https://h.example", "events": []}, ["events"]),
        ({"url": "https://h.example", "events": ["card.moved"]}, ["events", 0]),
        (
            {"url": "https://h.example", "events": ["contact.created"], "description": "d" * 501},
            ["description"],
        ),
    ]
    for bad, path in cases:
        assert issues_of(client.post("/webhooks", json=bad))[0]["path"] == path
    local = {"url": "http://127.0.0.1:9/hook", "events": ["submission.updated"]}
    assert client.post("/webhooks", json=local).status_code == 200


def test_long_idempotency_key_is_refused(client: httpx.Client, onboarding: str) -> None:
    response = post(client, onboarding, {"data": VALID}, **{"Idempotency-Key": "k" * 256})
    assert issues_of(response)[0]["path"] == ["headers", "Idempotency-Key"]
