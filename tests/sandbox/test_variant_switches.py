"""The switches that serve "the other side" of the open questions of docs/decisions.md.

Newest-first lists (#5), cursors that expire (#6), timestamps without milliseconds (#24), unknown
keys and schema item kinds (#16), and the 429 without any wait hint in body or header (#9).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import httpx
import pytest

from iozen_etl.commands.sandbox import config_from_args, configure
from iozen_etl.sandbox import Sandbox, SandboxConfig
from tests.support.sandbox import client_for, error_of

NO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
WITH_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def one_bot(count: int, **config: Any) -> tuple[Sandbox, str]:
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=count, **config))
    return sandbox, sandbox.bot_ids()[0]


def walk(client: httpx.Client, path: str, cursor: str | None = None) -> list[str]:
    ids: list[str] = []
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        ids.extend(item["id"] for item in data["submissions"])
        cursor = data["pagination"]["next_cursor"]
        if not cursor:
            return ids


@pytest.mark.parametrize("cursor_mode", ["id", "opaque"])
def test_descending_lists_are_newest_first_and_a_cursor_never_reaches_new_items(
    cursor_mode: str,
) -> None:
    sandbox, bot = one_bot(250, list_order="desc", cursor_mode=cursor_mode)
    ascending = sorted(sandbox.submission_ids(bot))
    path = f"/intake-bots/{bot}/submissions"
    with client_for(sandbox) as client:
        assert walk(client, path) == ascending[::-1]
        assert [s["id"] for s in sandbox.truth_submissions(bot)] == ascending[::-1]
        first = client.get(path, params={"limit": 100}).json()["data"]
        cursor = first["pagination"]["next_cursor"]
        sandbox.clock.advance(5)
        added = sandbox.generate_submissions(bot, 3)
        rest = walk(client, path, cursor)
        # Resuming walks towards older items: what was created since is never met.
        assert not set(added) & set(rest)
        assert len(rest) == 150
        assert walk(client, path)[:3] == added[::-1]
        bots = client.get("/intake-bots").json()["data"]["intake_bots"]
    assert [b["id"] for b in bots] == [b["id"] for b in sandbox.truth_bots()]


def test_expired_opaque_cursors_are_400_on_cursor_and_fresh_ones_work() -> None:
    sandbox, bot = one_bot(250, cursor_mode="opaque", cursor_ttl_s=600)
    path = f"/intake-bots/{bot}/submissions"
    with client_for(sandbox) as client:
        cursor = client.get(path, params={"limit": 100}).json()["data"]["pagination"]["next_cursor"]
        sandbox.clock.advance(599)
        assert len(walk(client, path, cursor)) == 150
        sandbox.clock.advance(2)
        expired = client.get(path, params={"cursor": cursor})
        item_id = client.get(path, params={"cursor": sandbox.submission_ids(bot)[0]})
        assert len(walk(client, path)) == 250
    assert expired.status_code == 400
    issue = error_of(expired)["details"]["issues"][0]
    assert issue["path"] == ["cursor"] and issue["code"] == "expired_cursor"
    # A resume point that is the last item's id is never a cursor in this world.
    assert error_of(item_id)["details"]["issues"][0]["path"] == ["cursor"]


def test_cursor_ttl_needs_opaque_cursors() -> None:
    with pytest.raises(ValueError, match="cursor_ttl_s"):
        Sandbox(SandboxConfig(bots=1, cursor_ttl_s=60))
    with pytest.raises(ValueError, match="list_order"):
        Sandbox(SandboxConfig(bots=1, list_order="random"))
    with pytest.raises(ValueError, match="timestamp_precision"):
        Sandbox(SandboxConfig(bots=1, timestamp_precision="us"))


def stamps(value: Any) -> list[str]:
    """Every value of a created_at / updated_at / last_delivery_at key, at any depth."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("created_at", "updated_at", "last_delivery_at") and isinstance(item, str):
                found.append(item)
            else:
                found.extend(stamps(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(stamps(item))
    return found


@pytest.mark.parametrize(("precision", "pattern"), [("ms", WITH_MS), ("s", NO_MS)])
def test_timestamp_precision_applies_to_every_answer_and_the_truth(
    precision: str, pattern: re.Pattern[str]
) -> None:
    sandbox = Sandbox(SandboxConfig(bots=2, submissions_per_bot=30, timestamp_precision=precision))
    bot = sandbox.bot_ids()[0]
    with client_for(sandbox) as client:
        sub_id = sandbox.submission_ids(bot)[0]
        created = client.post(
            f"/intake-bots/{bot}/submissions", json={"data": {}, "status": "IN_PROGRESS"}
        ).json()
        hook = client.post(
            "/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["submission.completed"]}
        ).json()
        answers = [
            client.get("/intake-bots").json(),
            client.get(f"/intake-bots/{bot}").json(),
            client.get(f"/intake-bots/{bot}/submissions").json(),
            client.get(f"/intake-bots/{bot}/submissions/{sub_id}").json(),
            client.get("/webhooks").json(),
            created,
            hook,
        ]
    found = stamps(answers)
    truth = stamps([sandbox.truth_bots(), sandbox.truth_submissions(), sandbox.truth_webhooks()])
    truth += stamps(sandbox.truth_submission(bot, sub_id))
    assert len(found) > 60 and len(truth) > 60
    assert all(pattern.match(stamp) for stamp in found + truth), [
        s for s in found + truth if not pattern.match(s)
    ][:3]
    listed = answers[2]["data"]["submissions"]
    assert listed == sandbox.truth_submissions(bot)[: len(listed)]


def test_unknown_extras_add_keys_and_a_mystery_schema_item() -> None:
    sandbox = Sandbox(SandboxConfig(bots=2, submissions_per_bot=10, unknown_extras=True))
    bot = sandbox.bot_ids()[0]
    with client_for(sandbox) as client:
        listed = client.get("/intake-bots").json()["data"]
        detail = client.get(f"/intake-bots/{bot}").json()["data"]["intake_bot"]
        subs = client.get(f"/intake-bots/{bot}/submissions").json()["data"]
        one = client.get(f"/intake-bots/{bot}/submissions/{subs['submissions'][0]['id']}").json()
    assert listed["intake_bots"][0]["x_unreleased"] == {"tier": 2, "flags": ["beta"]}
    assert "total_estimate" in listed["pagination"]
    assert detail["workspace_id"] == "ws_sandbox"
    kinds = [item.get("kind") for item in detail["schema"]["fields"]]
    assert kinds[-1] == "mystery" and kinds.count("mystery") == 1
    assert detail == sandbox.truth_bots()[0]
    assert all(s["workspace_id"] == "ws_sandbox" for s in subs["submissions"])
    assert subs["submissions"] == sandbox.truth_submissions(bot)
    assert one["data"]["submission"]["x_unreleased"]["tier"] == 2
    # The truth's fields (kind "field") are still exactly the bot's answerable fields.
    plain = Sandbox(SandboxConfig(bots=2, submissions_per_bot=10))
    assert [i for i in detail["schema"]["fields"] if i.get("kind") != "mystery"] == (
        plain.truth_bots()[0]["schema"]["fields"]
    )


def test_429_without_any_hint_but_x_ratelimit_reset() -> None:
    sandbox = Sandbox(
        SandboxConfig(
            bots=1,
            submissions_per_bot=5,
            rate_limit=2,
            retry_after_in_body=False,
            retry_after_header=False,
        )
    )
    with client_for(sandbox) as client:
        client.get("/intake-bots")
        sandbox.clock.advance(10)
        client.get("/intake-bots")
        refused = client.get("/intake-bots")
    assert refused.status_code == 429
    assert error_of(refused) == {
        "code": "rate_limit_exceeded",
        "message": "Rate limit exceeded",
        "details": {},
    }
    assert "retry-after" not in refused.headers
    reset_ms = int(refused.headers["x-ratelimit-reset"])
    assert reset_ms == round((sandbox.clock.now() - 10 + 60) * 1000)


def test_command_line_flags_reach_the_config() -> None:
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(
        [
            "--opaque-cursors",
            "--cursor-ttl",
            "90",
            "--newest-first",
            "--no-milliseconds",
            "--unknown-extras",
        ]
    )
    config = config_from_args(args)
    assert (config.cursor_mode, config.cursor_ttl_s, config.list_order) == ("opaque", 90.0, "desc")
    assert config.timestamp_precision == "s" and config.unknown_extras
    with pytest.raises(ValueError, match="cursor_ttl_s"):
        config_from_args(parser.parse_args(["--cursor-ttl", "90"]))
