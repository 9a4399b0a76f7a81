"""Each endpoint: the request sent and the record read back, in every documented shape."""

from __future__ import annotations

import httpx
import pytest

from iozen_etl import __version__
from iozen_etl.api import BodyTooLarge, IozenClient, MalformedResponse, TransportError
from tests.support.wire import API_KEY, body_of, bot, mock_client, ok, page, submission, webhook

FIELDS_SCHEMA = {
    "fields": [
        {
            "id": "f1",
            "kind": "field",
            "name": "full_name",
            "label": "Full Name",
            "type": "short_text",
            "required": True,
        },
        {
            "id": "cb1",
            "kind": "content",
            "name": "intro",
            "label": None,
            "content_type": "plain",
            "body": "Hello {{full_name}}",
        },
        {
            "id": "f2",
            "name": "priority",
            "label": "Priority",
            "type": "select",
            "options": ["low", "high"],
            "helper_text": "pick one",
        },
        {"id": "x1", "kind": "carousel", "name": "future_thing"},
    ]
}
LEGACY_SCHEMA = [
    {"name": "full_name", "label": "Full Name", "type": "text", "required": True},
    {"name": "priority", "label": "Priority", "type": "select", "options": ["low", "high"]},
]


def bot_detail_wrapped(request: httpx.Request) -> httpx.Response:
    return ok({"intake_bot": bot(1, description="d", share_url="s-1", schema=FIELDS_SCHEMA)})


def bot_detail_bare_legacy(request: httpx.Request) -> httpx.Response:
    return ok(bot(1, schema=LEGACY_SCHEMA, new_flag=True))


def echo_request(request: httpx.Request) -> httpx.Response:
    """Answers every route with a plausible payload and records nothing: tests read request.*."""
    path = request.url.path.removeprefix("/api/v1")
    if request.method == "GET" and path == "/intake-bots":
        return ok(page("intake_bots", [bot(1), bot(2)], None))
    if request.method == "GET" and path.endswith("/submissions"):
        return ok(page("submissions", [submission(1)], None) | {"schema": LEGACY_SCHEMA})
    if request.method == "GET" and "/submissions/" in path:
        detail = submission(
            1,
            intake_bot_id="bot001",
            messages=[
                {
                    "id": "m1",
                    "role": "assistant",
                    "content": "Hi",
                    "created_at": "2026-02-01T00:00:00Z",
                },
            ],
        )
        detail.pop("message_count")
        return ok({"submission": detail})
    if request.method == "POST" and path.endswith("/submissions"):
        return ok(
            {
                "submission": {
                    "id": "subNEW",
                    "status": "COMPLETED",
                    "created_at": "2026-03-01T00:00:00.000Z",
                }
            },
            201,
        )
    if request.method == "GET" and path == "/webhooks":
        return ok(page("webhooks", [webhook(1)], None))
    if request.method == "GET" and path.startswith("/webhooks/"):
        return ok({"webhook": webhook(1)})
    if request.method == "POST" and path == "/webhooks":
        return ok({"webhook": webhook(2, secret="whsec_abc")})
    if request.method == "DELETE":
        return httpx.Response(204)
    return httpx.Response(404)


captured: list[httpx.Request] = []


def capturing(request: httpx.Request) -> httpx.Response:
    captured.append(request)
    return echo_request(request)


@pytest.fixture
def client():
    captured.clear()
    with mock_client(capturing) as client:
        yield client


def test_every_request_carries_bearer_user_agent_and_base_path(client: IozenClient) -> None:
    client.list_intake_bots_page()
    request = captured[0]
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["User-Agent"] == f"iozen-etl/{__version__}"
    assert request.url.path == "/api/v1/intake-bots"
    assert request.url.params["limit"] == "100"
    assert "cursor" not in request.url.params


def test_list_intake_bots_reads_items_and_pagination(client: IozenClient) -> None:
    result = client.list_intake_bots_page(cursor="bot000", limit=10)
    assert captured[0].url.params["cursor"] == "bot000"
    assert captured[0].url.params["limit"] == "10"
    assert [b.id for b in result.items] == ["bot001", "bot002"]
    assert result.items[0].schema is None and result.items[0].submission_count == 1
    assert result.has_more is False and result.resume_point == "bot002"
    assert result.request_id == "req_ok000000000000000000000"


def test_bot_detail_wrapped_with_fields_skips_unknown_kinds_and_keeps_extra_keys() -> None:
    with mock_client(bot_detail_wrapped) as client:
        detail = client.get_intake_bot("bot001")
    assert detail.schema_shape == "fields"
    assert detail.description == "d" and detail.share_url == "s-1"
    assert detail.schema is not None
    assert [(i.name, i.kind) for i in detail.schema] == [
        ("full_name", "field"),
        ("intro", "content"),
        ("priority", "field"),
    ]
    intro, priority = detail.schema[1], detail.schema[2]
    assert intro.content_type == "plain" and intro.body == "Hello {{full_name}}"
    assert priority.options == ("low", "high") and priority.required is None
    assert priority.extra == {"helper_text": "pick one"}


def test_bot_detail_bare_data_with_legacy_list_schema() -> None:
    with mock_client(bot_detail_bare_legacy) as client:
        detail = client.get_intake_bot("bot001")
    assert detail.schema_shape == "legacy"
    assert detail.schema is not None
    assert [(i.name, i.kind, i.id, i.type) for i in detail.schema] == [
        ("full_name", "field", None, "text"),
        ("priority", "field", None, "select"),
    ]
    assert detail.extra == {"new_flag": True}


def test_ids_are_escaped_as_one_path_segment(client: IozenClient) -> None:
    client.get_submission("bot/../x", "s 1")
    assert captured[0].url.raw_path == b"/api/v1/intake-bots/bot%2F..%2Fx/submissions/s%201"


def test_list_submissions_fills_bot_id_and_reads_sibling_schema(client: IozenClient) -> None:
    result = client.list_submissions_page("bot001")
    assert captured[0].url.path == "/api/v1/intake-bots/bot001/submissions"
    (item,) = result.items
    assert item.intake_bot_id == "bot001" and item.messages is None
    assert item.data == {"full_name": "Person 1"} and item.message_count == 2
    assert result.schema is not None and [i.name for i in result.schema] == [
        "full_name",
        "priority",
    ]


def test_get_submission_reads_messages(client: IozenClient) -> None:
    detail = client.get_submission("bot001", "sub0001")
    assert detail.intake_bot_id == "bot001" and detail.message_count is None
    assert detail.messages is not None
    assert [(m.role, m.content) for m in detail.messages] == [("assistant", "Hi")]


def test_create_submission_sends_body_and_key_and_accepts_201(client: IozenClient) -> None:
    created = client.create_submission(
        "bot001", {"full_name": "Jane"}, status="COMPLETED", is_test=True, idempotency_key="row-7"
    )
    request = captured[0]
    assert request.method == "POST"
    assert request.headers["Idempotency-Key"] == "row-7"
    assert request.headers["Content-Type"] == "application/json"
    assert body_of(request) == {
        "data": {"full_name": "Jane"},
        "status": "COMPLETED",
        "is_test": True,
    }
    assert (created.id, created.status_code, created.replayed) == ("subNEW", 201, False)


def test_create_submission_without_a_key_generates_one(client: IozenClient) -> None:
    client.create_submission("bot001", {"full_name": "Jane"})
    assert captured[0].headers["Idempotency-Key"].startswith("iozen-etl-")
    assert body_of(captured[0]) == {"data": {"full_name": "Jane"}}


def test_webhooks_list_get_create_delete(client: IozenClient) -> None:
    listed = client.list_webhooks_page()
    assert [w.id for w in listed.items] == ["wh001"] and listed.items[0].secret is None
    assert client.get_webhook("wh001").events == ("submission.completed",)
    created = client.create_webhook("https://hooks.example.com/x", ["submission.completed"], "d")
    assert created.secret == "whsec_abc" and "whsec_abc" not in repr(created)
    assert body_of(captured[2]) == {
        "url": "https://hooks.example.com/x",
        "events": ["submission.completed"],
        "description": "d",
    }
    assert "Idempotency-Key" not in captured[2].headers
    client.delete_webhook("wh001")
    assert (captured[3].method, captured[3].url.path) == ("DELETE", "/api/v1/webhooks/wh001")


def test_delete_accepts_the_200_envelope() -> None:
    sent: list[httpx.Request] = []

    def delete_with_envelope(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return ok({"deleted": True, "id": "wh001"})

    with mock_client(delete_with_envelope) as client:
        client.delete_webhook("wh001")
        # Done at the first answer: neither retried nor counted as a failure.
        assert client.stats.snapshot() == {
            "requests": 1,
            "retries": 0,
            "throttled": 0,
            "seconds_waited": 0.0,
            "seconds_paced": 0.0,
        }
    assert [(r.method, r.url.path) for r in sent] == [("DELETE", "/api/v1/webhooks/wh001")]


def test_body_over_one_megabyte_is_refused_before_sending(client: IozenClient) -> None:
    with pytest.raises(BodyTooLarge) as caught:
        client.create_submission("bot001", {"notes": "x" * 1_048_576})
    assert captured == []
    assert caught.value.size > caught.value.limit == 1_048_576
    assert "POST /intake-bots/bot001/submissions" in str(caught.value)


def test_body_just_under_the_limit_is_sent(client: IozenClient) -> None:
    overhead = len(b'{"data":{"notes":""}}')
    client.create_submission("bot001", {"notes": "x" * (1_048_576 - overhead)})
    assert len(captured[0].content) == 1_048_576


def item_without_id(request: httpx.Request) -> httpx.Response:
    broken = bot(2)
    del broken["id"]
    return ok(page("intake_bots", [bot(1), broken], None))


def test_an_item_without_id_is_a_malformed_response_naming_its_position() -> None:
    with mock_client(item_without_id) as client, pytest.raises(MalformedResponse) as caught:
        client.list_intake_bots_page()
    assert "intake_bots[1]" in str(caught.value) and caught.value.status == 200


def test_client_repr_and_an_empty_key() -> None:
    with mock_client(echo_request) as client:
        assert API_KEY not in repr(client) and API_KEY not in repr(client.budget)
    with pytest.raises(ValueError, match="API key is required"):
        IozenClient("  ")


def test_a_key_that_cannot_be_a_header_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError) as caught:
        IozenClient("iozen_live_secret\u2019value")
    assert "secret" not in str(caught.value)


def test_an_unusable_base_url_fails_at_once() -> None:
    client = IozenClient(API_KEY, "ftp://iozen.test/api/v1")
    with client, pytest.raises(TransportError) as caught:
        client.list_intake_bots_page()
    assert client.stats.requests == 1 and API_KEY not in str(caught.value)
