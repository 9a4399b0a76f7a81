from __future__ import annotations

import json

import httpx
import pyarrow.parquet as pq

from iozen_etl.api import RetryPolicy
from iozen_etl.pipeline.reporting import run_observation
from iozen_etl.sandbox import FaultSpec, Sandbox, SandboxConfig, sandbox_transport
from iozen_etl.sync.state import RESCAN_STREAM, SUBMISSIONS_STREAM, WEBHOOKS_STREAM, StateStore
from iozen_etl.sync.submissions import PAGES_PER_FILE
from iozen_etl.sync.webhooks import sync_webhooks
from tests.support.lake import lake_files, read_table
from tests.support.sandbox import fake_time_client
from tests.support.sync import Workspace
from tests.support.truth import assert_lake_matches_truth, lake_submissions

UNLIMITED = 10**9


def sandbox(**options) -> Sandbox:
    options.setdefault("rate_limit", UNLIMITED)
    options.setdefault("bots", 6)
    options.setdefault("submissions_per_bot", 120)
    return Sandbox(SandboxConfig(**options))


def test_first_full_sync_matches_the_truth(tmp_path):
    box = sandbox()
    work = Workspace(tmp_path)
    bots, subs = work.sync(fake_time_client(box))
    assert_lake_matches_truth(tmp_path, box)
    assert len(bots.bots) == 6 and bots.details_fetched == 6 and bots.bots_new == 6
    assert subs.count("synced") == 6 and not subs.stopped_by_wait_ceiling
    assert subs.total("rows_new") == box.submission_total()
    fields = read_table(tmp_path, "intake_bot_fields")
    truth_items = sum(len(b["schema"]["fields"]) for b in box.truth_bots())
    assert fields.num_rows == truth_items
    assert read_table(tmp_path, "intake_bots").num_rows == 6


def test_an_unchanged_workspace_costs_only_the_bot_listing(tmp_path):
    box = sandbox(bots=30, submissions_per_bot=20)
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    # Leave nothing IN_PROGRESS, so the second run has nothing to refresh.
    for item in box.truth_submissions():
        if item["status"] == "IN_PROGRESS":
            box.update_submission(item["intake_bot_id"], item["id"], status="COMPLETED")
    work.sync(fake_time_client(box))
    before = box.request_count()
    bots, subs = work.sync(fake_time_client(box))
    assert box.request_count() - before == 1  # 30 bots fit one listing page
    assert subs.count("skipped") == 30 and bots.details_fetched == 0
    assert subs.requests == 0


def test_incremental_sync_after_new_updated_and_completed_submissions_and_a_new_bot(tmp_path):
    box = sandbox()
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    bot_ids = box.bot_ids()
    in_progress = [s for s in box.truth_submissions() if s["status"] == "IN_PROGRESS"]
    assert in_progress, "the seed should hold IN_PROGRESS submissions"
    completed = in_progress[0]
    box.clock.advance(60)
    box.update_submission(completed["intake_bot_id"], completed["id"], status="COMPLETED")
    box.generate_submissions(bot_ids[1], 150)
    new_bot = box.add_bot("Fresh")
    box.generate_submissions(new_bot, 30)
    files_before = len(lake_files(work.lake.root, "submissions"))

    bots, subs = work.sync(fake_time_client(box))

    assert_lake_matches_truth(tmp_path, box)
    assert bots.bots_new == 1 and bots.details_fetched == 1
    by_bot = {b.intake_bot_id: b for b in subs.bots}
    assert by_bot[new_bot].rows_new == 30
    assert by_bot[bot_ids[1]].rows_new == 150
    assert subs.total("refresh_completed") >= 1
    assert lake_submissions(tmp_path)[completed["id"]].status == "COMPLETED"
    files_after = len(lake_files(work.lake.root, "submissions"))
    assert files_after > files_before
    stored_bots = read_table(tmp_path, "intake_bots").to_pylist()
    newest = max((r for r in stored_bots if r["id"] == bot_ids[1]), key=lambda r: r["synced_at"])
    truth_bot = next(b for b in box.truth_bots() if b["id"] == bot_ids[1])
    assert newest["submission_count"] == truth_bot["submission_count"]
    assert newest["schema_shape"] == "fields"


def test_full_refresh_rescans_without_moving_the_live_point_backwards(tmp_path):
    box = sandbox(bots=2)
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    target = box.bot_ids()[0]
    with StateStore(work.paths.state_db) as state:
        live_before = state.get(SUBMISSIONS_STREAM, target)
    assert live_before is not None
    # An edit to a COMPLETED submission is only caught by a full refresh (docs/decisions.md #7).
    edited = next(s for s in box.truth_submissions(target) if s["status"] == "COMPLETED")
    lake_submissions_before = lake_submissions(tmp_path)
    box.clock.advance(60)
    box.update_submission(target, edited["id"])  # moves only its updated_at

    _, subs = work.sync(fake_time_client(box), full_refresh={target})

    report = next(b for b in subs.bots if b.intake_bot_id == target)
    assert report.rescan == "full_refresh" and report.rescan_finished
    assert report.rows_rescanned == len(box.truth_submissions(target))
    assert_lake_matches_truth(tmp_path, box)
    with StateStore(work.paths.state_db) as state:
        live_after = state.get(SUBMISSIONS_STREAM, target)
        assert state.get(RESCAN_STREAM, target) is None
    assert live_after is not None
    assert live_after.resume_point == live_before.resume_point
    assert live_after.scan_generation > live_before.scan_generation
    new_version = lake_submissions(tmp_path)[edited["id"]].updated_at
    assert new_version > lake_submissions_before[edited["id"]].updated_at


def test_a_sync_under_every_fault_kind_matches_the_truth(tmp_path):
    faults = FaultSpec.parse("5xx=0.1,429=0.1:3,drop=0.1,truncate=0.1,html=0.1,latency=5ms")
    box = Sandbox(
        SandboxConfig(rate_limit=UNLIMITED, bots=12, submissions_per_bot=150, faults=faults),
        sleep=lambda seconds: None,
    )
    work = Workspace(tmp_path)
    client = fake_time_client(box, retry=RetryPolicy(max_attempts=12, max_total_wait=10_000))
    bots, subs = work.sync(client)
    assert not bots.detail_errors
    assert subs.count("failed") == 0, [b.error for b in subs.bots]
    kinds = {k for k, n in client.stats.snapshot().items() if k.startswith("errors.") and n}
    assert len(kinds) >= 4 and client.stats.throttled > 0
    assert_lake_matches_truth(tmp_path, box)


def test_a_wait_ceiling_stops_cleanly_and_the_next_run_resumes(tmp_path):
    box = sandbox(bots=4, faults=FaultSpec.parse("429=0.3:4@submissions"))
    work = Workspace(tmp_path)
    stingy = RetryPolicy(max_attempts=20, max_total_wait=1.0)
    _, first = work.sync(fake_time_client(box, retry=stingy), concurrency=1)
    assert first.stopped_by_wait_ceiling and first.wait_ceiling_error
    assert first.count("stopped") >= 1
    kept = lake_submissions(tmp_path)
    patient = RetryPolicy(max_attempts=20, max_total_wait=10_000)
    _, second = work.sync(fake_time_client(box, retry=patient))
    assert not second.stopped_by_wait_ceiling
    assert_lake_matches_truth(tmp_path, box)
    # Nothing already committed was read again: the second run started where the first stopped.
    assert second.total("rows_new") == box.submission_total() - len(kept)


def test_a_schema_change_is_stored_as_a_new_version_and_answers_by_name_only(tmp_path):
    box = sandbox(bots=2)
    work = Workspace(tmp_path)
    first_bots, _ = work.sync(fake_time_client(box))
    target = box.bot_ids()[0]
    box.clock.advance(60)
    box.add_field(target, {"name": "loyalty_tier", "type": "select", "options": ["a", "b"]})
    victim = box.truth_submissions(target)[0]
    box.update_submission(target, victim["id"], data={"unlisted_answer": "secret-value-123"})
    box.generate_submissions(target, 5)

    bots, subs = work.sync(fake_time_client(box), full_refresh={target})

    # One schema file a run, holding the fetched details only: the changed bot's new version.
    assert first_bots.files_written == 2 and bots.details_fetched == 1
    files = lake_files(work.lake.root, "intake_bot_fields")
    assert len(files) == 2
    newest = pq.read_table(files[-1]).to_pylist()
    assert {row["intake_bot_id"] for row in newest} == {target}
    assert "loyalty_tier" in [row["name"] for row in newest]
    report = next(b for b in subs.bots if b.intake_bot_id == target)
    assert "unlisted_answer" in report.unknown_answer_fields
    assert "secret-value-123" not in repr(subs) + repr(bots) + str(run_observation(subs))
    assert_lake_matches_truth(tmp_path, box)
    answers = read_table(tmp_path, "submission_answers").to_pylist()
    assert any(r["field_name"] == "unlisted_answer" for r in answers)


def test_opaque_cursors(tmp_path):
    # Nothing IN_PROGRESS: the live stream starts at its resume point, not before it.
    box = sandbox(cursor_mode="opaque", bots=3, in_progress_share=0)
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    box.generate_submissions(box.bot_ids()[2], 120)
    _, subs = work.sync(fake_time_client(box))
    # The stored resume point (the last id) is not a token this server accepts: the engine
    # reads the last page again from its cursor instead of rescanning the bot.
    report = next(b for b in subs.bots if b.intake_bot_id == box.bot_ids()[2])
    assert report.resume_fallback and report.rescan is None
    assert 120 <= report.rows_new < 120 + 100
    assert_lake_matches_truth(tmp_path, box)


def test_pages_go_ten_to_a_file_and_a_rerun_replaces_them(tmp_path):
    box = sandbox(bots=2, submissions_per_bot=1_500)  # 14-16 pages a bot
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    files = {p: p.stat().st_size for p in lake_files(work.lake.root, "submissions")}
    per_file = PAGES_PER_FILE * 100
    assert all(pq.read_metadata(p).num_rows <= per_file for p in files)
    assert sum(p.name == "00000-start.parquet" for p in files) == 2
    with StateStore(work.paths.state_db) as state:
        for bot in box.truth_bots():
            pages = -(-bot["submission_count"] // 100)
            bot_files = [p for p in files if p.parent.name == f"bot_id={bot['id']}"]
            assert len(bot_files) == -(-pages // PAGES_PER_FILE) >= 2
            stream = state.get(SUBMISSIONS_STREAM, bot["id"])
            assert stream is not None and stream.pages_total == pages
    # Lose every commit (as if each page's commit had been killed): the re-run rewrites the
    # same files instead of adding copies.
    for suffix in ("", "-wal", "-shm"):
        work.paths.state_db.with_name(work.paths.state_db.name + suffix).unlink(missing_ok=True)
    work.sync(fake_time_client(box))
    assert set(lake_files(work.lake.root, "submissions")) == set(files)
    assert_lake_matches_truth(tmp_path, box)


def test_a_failure_mid_file_keeps_the_pages_read_before_it(tmp_path):
    # One bot of 7 pages; the server answers the 5th page request with a 400 that is no cursor
    # error (not retried): the bot fails, the 4 pages read are written and committed, and the
    # next run goes on from there.
    box = sandbox(bots=1, submissions_per_bot=650)
    inner: httpx.BaseTransport = sandbox_transport(box)
    served: list[str] = []

    def fifth_page_refused(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/submissions"):
            served.append(request.url.params.get("cursor", ""))
            if len(served) == 5:
                body = {
                    "success": False,
                    "error": {"code": "validation_failed", "message": "limit: bad", "details": {}},
                }
                return httpx.Response(400, json=body, headers={"X-Request-Id": "req_refused"})
        return inner.handle_request(request)

    work = Workspace(tmp_path)
    _, first = work.sync(fake_time_client(box, transport=httpx.MockTransport(fifth_page_refused)))
    (report,) = first.bots
    assert report.action == "failed" and "req_refused" in (report.error or "")
    assert report.pages == 4 and len(lake_submissions(tmp_path)) == 400
    with StateStore(work.paths.state_db) as state:
        stream = state.get(SUBMISSIONS_STREAM, box.bot_ids()[0])
        assert stream is not None and stream.resume_point == served[4] and stream.pages_total == 4
    _, second = work.sync(fake_time_client(box))
    assert second.total("rows_new") == 250
    assert_lake_matches_truth(tmp_path, box)


def test_webhooks_are_listed_and_a_plan_without_them_is_skipped(tmp_path):
    box = sandbox(bots=1)
    client = fake_time_client(box)
    client.create_webhook("http://127.0.0.1:9/hook", ["submission.completed"], "ops")
    work = Workspace(tmp_path)
    with StateStore(work.paths.state_db) as state:
        report = sync_webhooks(client, work.lake, state)
        assert report.webhooks == 1 and report.skipped is None
        rows = read_table(tmp_path, "webhooks").to_pylist()
        assert [r["events"] for r in rows] == [["submission.completed"]]
        pro = fake_time_client(box, api_key=box.add_key(["manage:webhooks"], plan="pro"))
        skipped = sync_webhooks(pro, work.lake, state)
    assert skipped.skipped == "feature_not_available" and skipped.webhooks == 0


def test_an_empty_webhook_list_is_written_as_an_empty_snapshot(tmp_path):
    box = sandbox(bots=1)
    client = fake_time_client(box)
    hook = client.create_webhook("http://127.0.0.1:9/hook", ["submission.completed"])
    work = Workspace(tmp_path)
    with StateStore(work.paths.state_db) as state:
        sync_webhooks(client, work.lake, state, clock=lambda: "2026-01-01T00:00:00.000Z")
        client.delete_webhook(hook.id)
        report = sync_webhooks(client, work.lake, state, clock=lambda: "2026-01-02T00:00:00.000Z")
    assert report.webhooks == 0 and report.files_written == 1
    files = lake_files(work.lake.root, "webhooks")
    assert [pq.read_table(path).num_rows for path in files] == [1, 0]


def test_an_unchanged_webhook_list_writes_no_new_snapshot(tmp_path):
    box = sandbox(bots=1)
    client = fake_time_client(box)
    client.create_webhook("http://127.0.0.1:9/hook", ["submission.completed"])
    work = Workspace(tmp_path)
    with StateStore(work.paths.state_db) as state:
        first = sync_webhooks(client, work.lake, state, clock=lambda: "2026-01-01T00:00:00.000Z")
        again = sync_webhooks(client, work.lake, state, clock=lambda: "2026-01-02T00:00:00.000Z")
        client.create_webhook("http://127.0.0.1:9/other", ["submission.updated"])
        moved = sync_webhooks(client, work.lake, state, clock=lambda: "2026-01-03T00:00:00.000Z")
        # The stream still records when the list was last read (the freshness check's source).
        seen = state.get(WEBHOOKS_STREAM)
    assert (first.files_written, again.files_written, moved.files_written) == (1, 0, 1)
    files = lake_files(work.lake.root, "webhooks")
    assert [pq.read_table(path).num_rows for path in files] == [1, 2]
    assert seen is not None and seen.seen_bot_updated_at == "2026-01-03T00:00:00.000Z"


def test_an_in_progress_answer_edited_within_the_same_second_is_stored(tmp_path):
    """Without milliseconds on the wire an edit can leave updated_at as it was: the refresh
    must still see the new answers (the warehouse breaks the tie by synced_at)."""
    box = sandbox(bots=1, submissions_per_bot=5, timestamp_precision="s")
    bot = box.bot_ids()[0]
    box.clock.advance(10.2)
    [waiting] = box.generate_submissions(bot, 1, status="IN_PROGRESS")
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    box.update_submission(bot, waiting, data={"notes": "edited"})
    _, subs = work.sync(fake_time_client(box))
    assert subs.total("refresh_updated") == 1
    rows = [r for r in read_table(tmp_path, "submissions").to_pylist() if r["id"] == waiting]
    assert len({r["updated_at"] for r in rows}) == 1  # the wire showed no change of time
    newest = max(rows, key=lambda r: r["synced_at"])
    assert newest["status"] == "IN_PROGRESS"
    assert json.loads(newest["data"])["notes"] == "edited"
    _, again = work.sync(fake_time_client(box))
    assert again.total("refreshed") >= 1 and again.total("refresh_updated") == 0


def test_only_chosen_bots_are_synced_and_an_unlisted_one_is_reported_missing(tmp_path):
    box = sandbox(bots=3)
    chosen = box.bot_ids()[1]
    _, subs = Workspace(tmp_path).sync(fake_time_client(box), only_bots={chosen, "no-such-bot"})
    assert [(b.intake_bot_id, b.action) for b in subs.bots] == [
        ("no-such-bot", "missing"),
        (chosen, "synced"),
    ]
    assert {row.intake_bot_id for row in lake_submissions(tmp_path).values()} == {chosen}
