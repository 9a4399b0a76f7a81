"""The nine endpoints answer with the documented shapes, and malformed requests get envelopes."""

from __future__ import annotations

import re

import httpx
import pytest

from iozen_etl.sandbox import Sandbox, SandboxConfig
from iozen_etl.sandbox.seed import FIELD_TYPES
from tests.support.sandbox import busiest_bot, client_for, error_of

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
REQUEST_ID = re.compile(r"^req_[0-9a-f]{24}$")


def test_list_bots_matches_truth_and_shape(sandbox: Sandbox, client: httpx.Client) -> None:
    response = client.get("/intake-bots", params={"limit": 100})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    bots = body["data"]["intake_bots"]
    assert body["data"]["pagination"] == {"has_more": False, "next_cursor": None}
    truth = sandbox.truth_bots()
    assert [bot["id"] for bot in bots] == [bot["id"] for bot in truth]
    for bot, expected in zip(bots, truth, strict=True):
        assert set(bot) == {"id", "name", "status", "submission_count", "created_at", "updated_at"}
        assert bot["submission_count"] == expected["submission_count"]
        assert ISO.match(bot["created_at"]) and ISO.match(bot["updated_at"])
        assert bot["created_at"] <= bot["updated_at"]
        assert len(bot["id"]) == 25 and bot["id"].startswith("c")


def test_every_response_has_request_id_and_rate_headers(client: httpx.Client) -> None:
    for path in ("/intake-bots", "/intake-bots/nope", "/nowhere", "/webhooks"):
        response = client.get(path)
        assert REQUEST_ID.match(response.headers["X-Request-Id"])
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
            assert int(response.headers[name]) >= 0
    ids = {client.get("/intake-bots").headers["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5


def test_get_bot_detail_covers_every_field_type_and_content_blocks(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    seen_types: set[str] = set()
    content_types: set[str] = set()
    for bot_id in sandbox.bot_ids():
        response = client.get(f"/intake-bots/{bot_id}")
        assert response.status_code == 200
        bot = response.json()["data"]["intake_bot"]
        assert bot["id"] == bot_id
        assert {"description", "share_url", "schema", "submission_count"} <= set(bot)
        for item in bot["schema"]["fields"]:
            assert {"id", "kind", "name"} <= set(item)
            if item["kind"] == "field":
                seen_types.add(item["type"])
                assert isinstance(item["required"], bool)
                if item["type"] in ("select", "multi_select"):
                    assert item["options"]
            else:
                assert item["kind"] == "content" and "type" not in item
                content_types.add(item["content_type"])
    assert seen_types == set(FIELD_TYPES)
    assert {"plain", "rich", "editor", "ai_generated"} <= content_types


def test_legacy_schema_and_unwrapped_detail_switches() -> None:
    sandbox = Sandbox(
        SandboxConfig(
            bots=1, submissions_per_bot=1, schema_shape="legacy", bot_detail_wrapped=False
        )
    )
    with client_for(sandbox) as client:
        data = client.get(f"/intake-bots/{sandbox.bot_ids()[0]}").json()["data"]
    assert "intake_bot" not in data and data["id"] == sandbox.bot_ids()[0]
    schema = data["schema"]
    assert isinstance(schema, list)
    assert all(set(item) <= {"name", "label", "type", "required", "options"} for item in schema)
    assert "text" in {item["type"] for item in schema}  # the older name of short_text


def test_list_submissions_shape_and_schema_sibling(sandbox: Sandbox, client: httpx.Client) -> None:
    bot_id = busiest_bot(sandbox)
    response = client.get(f"/intake-bots/{bot_id}/submissions", params={"limit": 100})
    data = response.json()["data"]
    assert data["submissions"] == sandbox.truth_submissions(bot_id)[:100]
    first = data["submissions"][0]
    assert set(first) == {
        "id",
        "data",
        "status",
        "ai_summary",
        "is_test",
        "file_count",
        "message_count",
        "schema_version",
        "created_at",
        "updated_at",
    }
    assert all(set(item) == {"name", "label", "type"} for item in data["schema"])
    statuses = {s["status"] for s in sandbox.truth_submissions()}
    assert statuses == {"COMPLETED", "IN_PROGRESS"}
    assert {s["is_test"] for s in sandbox.truth_submissions()} == {True, False}


def test_get_submission_has_messages_and_bot_id(sandbox: Sandbox, client: httpx.Client) -> None:
    bot_id = busiest_bot(sandbox)
    listed = sandbox.truth_submissions(bot_id)[0]
    response = client.get(f"/intake-bots/{bot_id}/submissions/{listed['id']}")
    assert response.status_code == 200
    submission = response.json()["data"]["submission"]
    assert submission["intake_bot_id"] == bot_id
    assert "message_count" not in submission
    assert len(submission["messages"]) == listed["message_count"]
    assert {m["role"] for m in submission["messages"]} <= {"assistant", "user"}
    assert submission["data"] == listed["data"]


def test_create_submission_returns_id_status_created_at(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    bot_id = sandbox.bot_ids()[0]  # the Customer Onboarding template
    before = len(sandbox.truth_submissions(bot_id))
    response = client.post(
        f"/intake-bots/{bot_id}/submissions",
        json={"data": {"full_name": "Jane Doe", "email": "jane@example.com", "consent": True}},
    )
    assert response.status_code == 200
    created = response.json()["data"]["submission"]
    assert set(created) == {"id", "status", "created_at"}
    assert created["status"] == "COMPLETED"
    truth = sandbox.truth_submissions(bot_id)
    assert len(truth) == before + 1 and truth[-1]["id"] == created["id"]
    assert truth[-1]["message_count"] == 0 and truth[-1]["is_test"] is False
    bot = next(b for b in sandbox.truth_bots() if b["id"] == bot_id)
    assert bot["submission_count"] == before + 1


def test_webhook_endpoints_round_trip(sandbox: Sandbox, client: httpx.Client) -> None:
    created = client.post(
        "/webhooks",
        json={
            "url": "https://api.example.com/webhooks/iozen",
            "events": ["submission.completed", "submission.updated"],
            "description": "Production submission handler",
        },
    )
    assert created.status_code == 200
    hook = created.json()["data"]["webhook"]
    assert hook["secret"].startswith("whsec_")
    assert hook["status"] == "active" and hook["consecutive_fails"] == 0
    fetched = client.get(f"/webhooks/{hook['id']}").json()["data"]["webhook"]
    assert "secret" not in fetched
    assert fetched == {k: v for k, v in hook.items() if k != "secret"}
    listed = client.get("/webhooks").json()["data"]
    assert listed["webhooks"] == [fetched] and listed["pagination"]["has_more"] is False
    deleted = client.delete(f"/webhooks/{hook['id']}")
    assert deleted.status_code == 200
    assert deleted.json() == {"success": True, "data": {"deleted": True, "id": hook["id"]}}
    assert error_of(client.get(f"/webhooks/{hook['id']}"))["details"] == {"resource": "webhook"}


def test_create_201_and_delete_204_switches() -> None:
    sandbox = Sandbox(
        SandboxConfig(bots=1, submissions_per_bot=0, create_status=201, delete_status=204)
    )
    with client_for(sandbox) as client:
        created = client.post(
            "/webhooks", json={"url": "https://e.example/h", "events": ["submission.updated"]}
        )
        assert created.status_code == 201
        deleted = client.delete(f"/webhooks/{created.json()['data']['webhook']['id']}")
    assert deleted.status_code == 204 and deleted.content == b""


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/intake-bots/cmissing000000000000000000", "intake_bot"),
        ("/intake-bots/cmissing000000000000000000/submissions", "intake_bot"),
        ("/webhooks/cmissing000000000000000000", "webhook"),
    ],
)
def test_missing_resources_are_404_with_resource(
    client: httpx.Client, path: str, resource: str
) -> None:
    response = client.get(path)
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "resource_not_found" and error["details"] == {"resource": resource}


def test_missing_submission_is_404(sandbox: Sandbox, client: httpx.Client) -> None:
    response = client.get(f"/intake-bots/{sandbox.bot_ids()[0]}/submissions/cnope")
    assert error_of(response)["details"] == {"resource": "submission"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/api/v2/intake-bots"),
        ("GET", "/api/v1/intake-bots//submissions"),
        ("PATCH", "/api/v1/intake-bots"),
        ("DELETE", "/api/v1/intake-bots/x"),
        ("PUT", "/api/v1/webhooks"),
        ("GET", "/api/v1/contacts"),
        ("GET", "/api/v1/intake-bots/%00/submissions/%ff"),
    ],
)
def test_unknown_routes_and_wrong_methods_get_404_envelopes(
    sandbox: Sandbox, method: str, path: str
) -> None:
    with client_for(sandbox) as client:
        response = client.request(method, "http://sandbox.test" + path)
    assert response.status_code == 404
    assert error_of(response)["code"] == "resource_not_found"


def test_wsgi_app_serves_the_same_answers(sandbox: Sandbox) -> None:
    transport = httpx.WSGITransport(app=sandbox)
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    with httpx.Client(transport=transport, base_url="http://s/api/v1", headers=headers) as client:
        listed = client.get("/intake-bots", params={"limit": 2}).json()
        posted = client.post(
            f"/intake-bots/{sandbox.bot_ids()[1]}/submissions",
            json={"data": {}, "status": "IN_PROGRESS"},
        )
    assert [b["id"] for b in listed["data"]["intake_bots"]] == sandbox.bot_ids()[:2]
    assert posted.status_code == 200
