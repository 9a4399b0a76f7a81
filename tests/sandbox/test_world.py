"""Seeded data is deterministic and realistic; the world moves through methods and /_sandbox/."""

from __future__ import annotations

import re

import httpx

from iozen_etl.sandbox import Sandbox, SandboxConfig
from tests.support.sandbox import client_for


def test_same_seed_same_world() -> None:
    first = Sandbox(SandboxConfig(seed=3, bots=8, submissions_per_bot=30))
    second = Sandbox(SandboxConfig(seed=3, bots=8, submissions_per_bot=30))
    assert first.truth_bots() == second.truth_bots()
    assert first.truth_submissions() == second.truth_submissions()
    assert first.api_key == second.api_key
    other = Sandbox(SandboxConfig(seed=4, bots=8, submissions_per_bot=30))
    assert other.truth_submissions() != first.truth_submissions()


def test_moves_are_deterministic_too() -> None:
    def run() -> list[dict[str, object]]:
        sandbox = Sandbox(SandboxConfig(seed=5, bots=2, submissions_per_bot=10))
        bot = sandbox.bot_ids()[0]
        sandbox.generate_submissions(bot, 5)
        sandbox.clock.advance(30)
        sandbox.update_submission(bot, sandbox.truth_submissions(bot)[0]["id"], status="COMPLETED")
        return sandbox.truth_submissions(bot)

    assert run() == run()


def test_spread_over_bots_is_skewed_and_total_is_exact() -> None:
    sandbox = Sandbox(SandboxConfig(bots=40, submissions_per_bot=50))
    counts = sorted(bot["submission_count"] for bot in sandbox.truth_bots())
    assert sum(counts) == 2000 == sandbox.submission_total()
    assert counts[0] == 0 and counts[-1] > 3 * 50  # empty bots and big ones


def test_values_are_realistic_and_varied() -> None:
    sandbox = Sandbox(SandboxConfig(bots=5, submissions_per_bot=200))
    values = [v for s in sandbox.truth_submissions() for v in s["data"].values()]
    texts = [v for v in values if isinstance(v, str)]
    assert any(re.search(r"[\u0400-\u04ff]", t) for t in texts)  # Cyrillic
    assert any(re.search(r"[\u4e00-\u9fff]", t) for t in texts)  # CJK
    assert any(re.search(r"[\u0600-\u06ff]", t) for t in texts)  # Arabic
    assert any(re.search(r"[\U0001f300-\U0001faff]", t) for t in texts)  # emoji
    assert any("@" in t for t in texts)
    assert any(len(t) > 1000 for t in texts)
    assert any(isinstance(v, list) for v in values)
    assert any(isinstance(v, bool) for v in values)
    assert any(isinstance(v, float) for v in values)
    assert any(isinstance(v, int) and not isinstance(v, bool) for v in values)
    assert any(v is None for v in values)
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\d", t) for t in texts)
    summaries = {s["ai_summary"] for s in sandbox.truth_submissions()}
    assert None in summaries and len(summaries) > 3


def test_completed_seeded_submissions_answer_required_fields() -> None:
    sandbox = Sandbox(SandboxConfig(bots=5, submissions_per_bot=60))
    checked = 0
    for bot in sandbox.truth_bots():
        required = [f["name"] for f in bot["schema"]["fields"] if f.get("required")]
        for submission in sandbox.truth_submissions(bot["id"]):
            if submission["status"] == "COMPLETED" and required:
                assert all(submission["data"].get(name) is not None for name in required)
                checked += 1
    assert checked > 0, "no completed submission of a bot with required fields was seeded"


def test_generate_and_update_move_counts_and_timestamps(sandbox: Sandbox) -> None:
    bot = sandbox.bot_ids()[0]
    bot_before = next(b for b in sandbox.truth_bots() if b["id"] == bot)
    sandbox.clock.advance(60)
    ids = sandbox.generate_submissions(bot, 3, status="IN_PROGRESS")
    bot_after = next(b for b in sandbox.truth_bots() if b["id"] == bot)
    assert bot_after["submission_count"] == bot_before["submission_count"] + 3
    assert bot_after["updated_at"] == bot_before["updated_at"]  # documented: counts only
    truth = {s["id"]: s for s in sandbox.truth_submissions(bot)}
    before = truth[ids[0]]
    sandbox.clock.advance(60)
    sandbox.update_submission(bot, ids[0], status="COMPLETED", data={"full_name": "Updated"})
    after = {s["id"]: s for s in sandbox.truth_submissions(bot)}[ids[0]]
    assert after["status"] == "COMPLETED" and after["data"]["full_name"] == "Updated"
    assert after["updated_at"] > before["updated_at"]
    assert after["created_at"] == before["created_at"]
    assert [s["id"] for s in sandbox.truth_submissions(bot)][-3:] == ids  # position kept


def test_bot_touch_switch_moves_updated_at() -> None:
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=2, bot_touch_on_submission=True))
    bot = sandbox.bot_ids()[0]
    sandbox.generate_submissions(bot, 1)
    assert sandbox.truth_bots()[0]["updated_at"] == "2026-06-01T00:00:00.000Z"


def test_a_deleted_bot_leaves_the_listing_and_answers_404(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    gone = sandbox.bot_ids()[0]
    total = sandbox.submission_total()
    count = len(sandbox.submission_ids(gone))
    sandbox.delete_bot(gone)
    listed = client.get("/intake-bots", params={"limit": 100}).json()["data"]["intake_bots"]
    assert gone not in {bot["id"] for bot in listed} and gone not in sandbox.bot_ids()
    answer = client.get(f"/intake-bots/{gone}/submissions")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "resource_not_found"
    assert sandbox.submission_total() == total - count


def test_pause_add_field_and_add_bot(sandbox: Sandbox, client: httpx.Client) -> None:
    bot = sandbox.bot_ids()[1]
    before = client.get(f"/intake-bots/{bot}").json()["data"]["intake_bot"]
    sandbox.clock.advance(5)
    sandbox.pause_bot(bot)
    sandbox.add_field(bot, {"name": "loyalty_id", "type": "short_text", "label": "Loyalty ID"})
    after = client.get(f"/intake-bots/{bot}").json()["data"]["intake_bot"]
    assert after["status"] == "PAUSED"
    assert after["updated_at"] > before["updated_at"]
    assert after["schema"]["fields"][-1]["name"] == "loyalty_id"
    listed = client.get(f"/intake-bots/{bot}/submissions").json()["data"]["schema"]
    assert listed[-1] == {"name": "loyalty_id", "label": "Loyalty ID", "type": "short_text"}
    new_bot = sandbox.add_bot("Late Bot")
    assert (
        client.get("/intake-bots", params={"limit": 100}).json()["data"]["intake_bots"][-1]["id"]
        == new_bot
    )
    empty = client.get(f"/intake-bots/{new_bot}/submissions").json()["data"]
    assert empty["submissions"] == []


def test_sandbox_routes_move_the_world_and_tell_the_truth(sandbox: Sandbox) -> None:
    bot = sandbox.bot_ids()[0]
    with httpx.Client(transport=httpx.WSGITransport(app=sandbox), base_url="http://s") as admin:
        generated = admin.post("/_sandbox/generate", json={"bot_id": bot, "n": 2}).json()
        ids = generated["data"]["ids"]
        assert len(ids) == 2
        admin.post("/_sandbox/advance", json={"seconds": 10})
        update = {"bot_id": bot, "submission_id": ids[0], "status": "IN_PROGRESS"}
        assert admin.post("/_sandbox/update", json=update).status_code == 200
        assert admin.post("/_sandbox/pause", json={"bot_id": bot}).status_code == 200
        field = {"bot_id": bot, "field": {"name": "extra", "type": "number"}}
        assert admin.post("/_sandbox/add-field", json=field).status_code == 200
        new_bot = admin.post("/_sandbox/add-bot", json={"name": "Via HTTP"}).json()["data"]["id"]
        truth_bots = admin.get("/_sandbox/truth/bots").json()["data"]
        truth_subs = admin.get("/_sandbox/truth/submissions", params={"bot_id": bot}).json()["data"]
        missing = admin.post("/_sandbox/generate", json={"bot_id": "nope", "n": 1})
        bad = admin.post("/_sandbox/generate", json={"n": 1})
        unknown = admin.get("/_sandbox/whatever")
        with client_for(sandbox) as client:
            client.get("/intake-bots")
            client.get("/intake-bots")
        count = admin.get("/_sandbox/requests", params={"route": "bots", "method": "GET"}).json()
        clock = admin.get("/_sandbox/clock").json()["data"]["now"]
    assert truth_bots == sandbox.truth_bots() and truth_bots[-1]["id"] == new_bot
    assert truth_subs == sandbox.truth_submissions(bot)
    assert {s["id"]: s["status"] for s in truth_subs}[ids[0]] == "IN_PROGRESS"
    assert missing.status_code == 404 and bad.status_code == 400 and unknown.status_code == 404
    assert count["data"]["count"] == 2
    assert clock == sandbox.clock.now()


def test_request_counters(sandbox: Sandbox, client: httpx.Client) -> None:
    bot = sandbox.bot_ids()[0]
    client.get("/intake-bots")
    client.get(f"/intake-bots/{bot}/submissions")
    client.get(f"/intake-bots/{bot}/submissions")
    client.get("/nowhere")
    assert sandbox.request_count() == 4
    assert sandbox.request_count("submissions") == 2
    assert sandbox.request_count("bots", "GET") == 1
    assert sandbox.request_count("bots", "POST") == 0


def test_a_million_scale_seed_shape_in_small() -> None:
    # Past the per-template answer variants, answers repeat but ids and times stay unique.
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=17_000))
    ids = [s["id"] for s in sandbox.truth_submissions()]
    assert len(ids) == len(set(ids)) == 17_000
    assert sandbox.submission_ids() == ids == sandbox.submission_ids(sandbox.bot_ids()[0])
