"""Cursor pagination: defaults, clamping, bad limits and cursors, edges, inserts between pages."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from iozen_etl.sandbox import Sandbox, SandboxConfig
from tests.support.sandbox import client_for, error_of


def one_bot(count: int, **config: Any) -> tuple[Sandbox, str]:
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=count, **config))
    return sandbox, sandbox.bot_ids()[0]


def page_through(client: httpx.Client, path: str, limit: int | None = 100) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {} if limit is None else {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        data = client.get(path, params=params).json()["data"]
        pages.append([item["id"] for item in data["submissions"]])
        pagination = data["pagination"]
        assert pagination["has_more"] == (pagination["next_cursor"] is not None)
        cursor = pagination["next_cursor"]
        if not cursor:
            return pages


def test_default_limit_is_50_and_above_100_is_clamped() -> None:
    sandbox, bot = one_bot(150)
    with client_for(sandbox) as client:
        path = f"/intake-bots/{bot}/submissions"
        assert len(client.get(path).json()["data"]["submissions"]) == 50
        assert len(client.get(path, params={"limit": 500}).json()["data"]["submissions"]) == 100
        assert len(client.get(path, params={"limit": 1}).json()["data"]["submissions"]) == 1


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1.5", "", " ", "1e2", "١٠"])
def test_bad_limits_are_400_validation_failed(sandbox: Sandbox, limit: str) -> None:
    with client_for(sandbox) as client:
        response = client.get("/intake-bots", params={"limit": limit})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert error["details"]["issues"][0]["path"] == ["limit"]


@pytest.mark.parametrize("count", [0, 1, 99, 100, 101, 200, 201])
def test_edges_every_item_once_in_order(count: int) -> None:
    sandbox, bot = one_bot(count)
    with client_for(sandbox) as client:
        pages = page_through(client, f"/intake-bots/{bot}/submissions")
    ids = [item for page in pages for item in page]
    assert ids == [s["id"] for s in sandbox.truth_submissions(bot)]
    assert len(pages) == max(1, -(-count // 100))  # exactly 100 is one page with has_more false
    assert all(len(page) == 100 for page in pages[:-1])


def test_next_cursor_is_the_last_items_id() -> None:
    sandbox, bot = one_bot(101)
    with client_for(sandbox) as client:
        data = client.get(f"/intake-bots/{bot}/submissions", params={"limit": 100}).json()["data"]
    assert data["pagination"]["next_cursor"] == data["submissions"][-1]["id"]


def test_order_is_created_at_then_id() -> None:
    sandbox = Sandbox(SandboxConfig(bots=3, submissions_per_bot=300))
    for bot in sandbox.bot_ids():
        keys = [(s["created_at"], s["id"]) for s in sandbox.truth_submissions(bot)]
        assert keys == sorted(keys)
    bots = [(b["created_at"], b["id"]) for b in sandbox.truth_bots()]
    assert bots == sorted(bots)


@pytest.mark.parametrize("cursor_mode", ["id", "opaque"])
def test_inserts_between_pages_neither_duplicate_nor_skip(cursor_mode: str) -> None:
    sandbox, bot = one_bot(150, cursor_mode=cursor_mode)
    path = f"/intake-bots/{bot}/submissions"
    with client_for(sandbox) as client:
        first = client.get(path, params={"limit": 100}).json()["data"]
        cursor = first["pagination"]["next_cursor"]
        added = sandbox.generate_submissions(bot, 30)
        sandbox.clock.advance(1)
        posted = client.post(path, json={"data": {}, "status": "IN_PROGRESS"}).json()
        rest = page_through_from(client, path, cursor)
    seen = [s["id"] for s in first["submissions"]] + rest
    assert len(seen) == len(set(seen)) == 181
    assert seen[-31:] == [*added, posted["data"]["submission"]["id"]]
    assert seen == [s["id"] for s in sandbox.truth_submissions(bot)]


def page_through_from(client: httpx.Client, path: str, cursor: str) -> list[str]:
    ids: list[str] = []
    while cursor:
        data = client.get(path, params={"limit": 100, "cursor": cursor}).json()["data"]
        ids += [item["id"] for item in data["submissions"]]
        cursor = data["pagination"]["next_cursor"]
    return ids


def test_opaque_cursors_are_not_item_ids() -> None:
    sandbox, bot = one_bot(120, cursor_mode="opaque")
    with client_for(sandbox) as client:
        data = client.get(f"/intake-bots/{bot}/submissions", params={"limit": 100}).json()["data"]
        cursor = data["pagination"]["next_cursor"]
        assert cursor not in {s["id"] for s in sandbox.truth_submissions(bot)}
        assert len(page_through_from(client, f"/intake-bots/{bot}/submissions", cursor)) == 20
        bad = client.get(
            f"/intake-bots/{bot}/submissions", params={"cursor": data["submissions"][0]["id"]}
        )
    assert error_of(bad)["details"]["issues"][0]["path"] == ["cursor"]


@pytest.mark.parametrize("cursor", ["garbage", "c" * 25, "'; drop table", "%%%", "x" * 5000])
def test_unknown_or_malformed_cursor_is_400_on_cursor(sandbox: Sandbox, cursor: str) -> None:
    bot = sandbox.bot_ids()[0]
    with client_for(sandbox) as client:
        for path in (f"/intake-bots/{bot}/submissions", "/intake-bots", "/webhooks"):
            response = client.get(path, params={"cursor": cursor})
            assert response.status_code == 400
            issue = error_of(response)["details"]["issues"][0]
            assert issue["path"] == ["cursor"]


def test_a_cursor_from_another_bot_is_rejected() -> None:
    sandbox = Sandbox(SandboxConfig(bots=2, submissions_per_bot=200))
    first, second = sandbox.bot_ids()
    foreign = sandbox.truth_submissions(first)[0]["id"]
    with client_for(sandbox) as client:
        response = client.get(f"/intake-bots/{second}/submissions", params={"cursor": foreign})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert [(i["path"], i["code"]) for i in error["details"]["issues"]] == [
        (["cursor"], "invalid_cursor")
    ]


def test_bots_and_webhooks_lists_paginate() -> None:
    sandbox = Sandbox(SandboxConfig(bots=7, submissions_per_bot=1))
    with client_for(sandbox) as client:
        for index in range(5):
            client.post(
                "/webhooks",
                json={"url": f"https://h.example/{index}", "events": ["submission.updated"]},
            )
        seen_bots, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            data = client.get("/intake-bots", params=params).json()["data"]
            seen_bots += [b["id"] for b in data["intake_bots"]]
            cursor = data["pagination"]["next_cursor"]
            if not cursor:
                break
        hooks = client.get("/webhooks", params={"limit": 2}).json()["data"]
    assert seen_bots == sandbox.bot_ids()
    assert len(hooks["webhooks"]) == 2 and hooks["pagination"]["has_more"] is True


def test_empty_bot_has_an_empty_last_page() -> None:
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=0))
    with client_for(sandbox) as client:
        data = client.get(f"/intake-bots/{sandbox.bot_ids()[0]}/submissions").json()["data"]
    assert data["submissions"] == []
    assert data["pagination"] == {"has_more": False, "next_cursor": None}
