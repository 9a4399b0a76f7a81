"""End to end against servers that take "the other side" of every open question (docs/decisions.md).

Each variant: seed a sandbox, sync + load, move the world (new submissions, IN_PROGRESS ones
completed and edited, a new bot, an added field, a webhook deleted), sync + load incrementally,
and compare the published warehouse with the sandbox's ground truth. Waiting moves the sandbox's
clock (``sleep=sandbox.clock.advance``), so rate limits and backoff cost no real time.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from iozen_etl.pipeline.reporting import run_totals
from iozen_etl.replay import replay_csv
from iozen_etl.sandbox import FaultSpec, Sandbox, SandboxConfig
from iozen_etl.settings import DataPaths
from iozen_etl.sync.bots import sync_bots
from iozen_etl.sync.lake import Lake
from iozen_etl.sync.state import StateStore
from iozen_etl.sync.submissions import sync_submissions
from tests.support.truth import (
    assert_warehouse_equals_truth,
    truth_submissions,
    warehouse_submissions,
)
from tests.support.variants import RunReport, move_world, run_pipeline, variants_client
from tests.support.warehouse import Published

UNLIMITED = 10**9
EXAMPLE_CSV = Path(__file__).resolve().parents[1] / "iozen_etl" / "examples" / "submissions.csv"


@dataclass(frozen=True)
class Variant:
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 4  # 1 where faults must strike the same requests every run


BURSTS_429 = FaultSpec.parse("429=0.08:3")

VARIANTS = [
    Variant("defaults"),
    Variant("create_201_delete_204", {"create_status": 201, "delete_status": 204}),
    Variant("legacy_schema_shape", {"schema_shape": "legacy"}),
    Variant("unwrapped_bot_detail", {"bot_detail_wrapped": False}),
    # The client paces itself by X-RateLimit-*, so 429 bursts are injected to be sure it meets
    # them: with only X-RateLimit-Reset to go by, with only a Retry-After header, with 0 in both.
    Variant(
        "429_no_retry_after_anywhere",
        {"rate_limit": 25, "retry_after_in_body": False, "faults": BURSTS_429},
        concurrency=1,
    ),
    Variant(
        "429_retry_after_header_only",
        {
            "rate_limit": 25,
            "retry_after_in_body": False,
            "retry_after_header": True,
            "faults": BURSTS_429,
        },
        concurrency=1,
    ),
    Variant(
        "429_retry_after_zero",
        {
            "rate_limit": 25,
            "retry_after_header": True,
            "retry_after_zero": True,
            "faults": BURSTS_429,
        },
        concurrency=1,
    ),
    Variant("small_rate_limit_threads", {"rate_limit": 20}),
    Variant("opaque_cursors", {"cursor_mode": "opaque"}),
    Variant("cursors_expire", {"cursor_mode": "opaque", "cursor_ttl_s": 30.0}),
    Variant("no_millisecond_timestamps", {"timestamp_precision": "s"}),
    Variant("newest_first", {"list_order": "desc"}),
    Variant("newest_first_opaque", {"list_order": "desc", "cursor_mode": "opaque"}),
    Variant("unknown_kinds_and_fields", {"unknown_extras": True}),
    Variant("bot_touch_on_submission", {"bot_touch_on_submission": True}),
    Variant(
        "faults",
        {"faults": FaultSpec.parse("5xx=0.05,drop=0.03,truncate=0.03,html=0.03,429=0.03:3")},
        concurrency=1,
    ),
    Variant(
        "everything_at_once",
        {
            "create_status": 201,
            "delete_status": 204,
            "schema_shape": "legacy",
            "bot_detail_wrapped": False,
            "cursor_mode": "opaque",
            "cursor_ttl_s": 30.0,
            "list_order": "desc",
            "timestamp_precision": "s",
            "unknown_extras": True,
            "rate_limit": 30,
            "retry_after_in_body": False,
            "faults": FaultSpec.parse("5xx=0.03,drop=0.02,truncate=0.02,html=0.02"),
        },
        concurrency=1,
    ),
]


def make_sandbox(**config: Any) -> Sandbox:
    config.setdefault("seed", 3)
    config.setdefault("bots", 4)
    config.setdefault("submissions_per_bot", 70)
    config.setdefault("rate_limit", UNLIMITED)
    return Sandbox(SandboxConfig(**config))


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_first_and_incremental_sync_equal_the_truth(variant: Variant, paths: DataPaths) -> None:
    sandbox = make_sandbox(**variant.config)
    client = variants_client(sandbox)
    kept = client.create_webhook("http://127.0.0.1:9/kept", ["submission.completed"])
    gone = client.create_webhook("http://127.0.0.1:9/gone", ["submission.updated"])

    first = run_pipeline(client, paths, concurrency=variant.concurrency)
    assert_warehouse_equals_truth(paths, sandbox)
    assert first.webhooks.webhooks == 2
    faults = str(variant.config.get("faults", ""))
    if faults:  # the faults really struck, and were retried
        assert client.stats.retries > 0
    if "429" in faults:
        assert client.stats.throttled > 0

    moved = move_world(sandbox)
    client.delete_webhook(gone.id)
    assert [h["id"] for h in sandbox.truth_webhooks()] == [kept.id]

    second = run_pipeline(client, paths, concurrency=variant.concurrency)
    assert_warehouse_equals_truth(paths, sandbox)
    assert second.bots.bots_new == 1
    if variant.config.get("unknown_extras"):
        # Unknown keys are kept (in ``extra``), unknown schema item kinds skipped, not fatal.
        with Published(paths) as published:
            for table in ("submissions", "intake_bots"):
                with_extras = published.rows(
                    f"select count(*) from {table} where extra like '%x_unreleased%'"
                )
                assert with_extras == published.rows(f"select count(*) from {table}"), table
            assert published.rows(
                "select count(*) from intake_bot_fields where kind = 'mystery'"
            ) == [(0,)]
    stored = warehouse_submissions(paths)
    assert stored[moved["completed"]][1] == "COMPLETED"
    assert stored[moved["edited"]][3]["notes"] == "edited"
    # The incremental run read the new rows, not the whole workspace again (rescans aside,
    # which newest-first lists and expired cursors force).
    if variant.config.get("list_order", "asc") == "asc" and "cursor_ttl_s" not in variant.config:
        assert second.submissions.total("rows_rescanned") == 0
        if variant.config.get("cursor_mode", "id") == "id":
            assert second.submissions.total("rows_new") == moved["new_submissions"]
        else:
            # docs/decisions.md #6: a resume point that is the last item's id is no cursor here; the
            # last page is read again from the cursor it began at (at most one page per bot).
            # Or, where IN_PROGRESS rows sit in that page, from its start for them as well.
            again = second.submissions.total("rows_new") + second.submissions.total("rows_reread")
            extra = again - moved["new_submissions"]
            assert 0 < extra <= 100 * len(second.submissions.bots)
            assert any(b.resume_fallback or b.rows_reread for b in second.submissions.bots)


def test_rate_limited_runs_wait_on_the_sandbox_clock(paths: DataPaths) -> None:
    sandbox = make_sandbox(rate_limit=4)
    client = variants_client(sandbox)
    before = sandbox.clock.now()
    report = run_pipeline(client, paths)
    assert_warehouse_equals_truth(paths, sandbox)
    assert sandbox.request_count() > 8
    # Waiting the windows out moved the sandbox clock, not the test's wall time.
    assert sandbox.clock.now() - before >= 60.0
    stats = client.stats.snapshot()
    assert stats["seconds_waited"] + stats["seconds_paced"] >= 60.0
    assert report.submissions.requests > 0


def test_newest_first_lists_fall_back_to_a_rescan_and_say_so(paths: DataPaths) -> None:
    sandbox = make_sandbox(list_order="desc", submissions_per_bot=150)
    client = variants_client(sandbox)
    run_pipeline(client, paths)
    move_world(sandbox)
    second = run_pipeline(client, paths)
    assert_warehouse_equals_truth(paths, sandbox)
    rescanned = {b.intake_bot_id: b.rescan for b in second.submissions.bots if b.rescan}
    assert rescanned, "a newest-first list must be rescanned, not trusted from a cursor"
    assert set(rescanned.values()) == {"out_of_order"}
    assert run_totals(second.submissions)["bots_rescanned"] == len(rescanned)


def sync_across_cursor_expiry(
    paths: DataPaths, *, refresh_limit: int = 500, late_in_progress: int = 0, **config: Any
) -> RunReport:
    """Sync, let every cursor expire while the world moves, sync again; the warehouse must
    equal the truth. Returns the second run."""
    sandbox = make_sandbox(cursor_mode="opaque", cursor_ttl_s=30.0, **config)
    for bot in sandbox.bot_ids():
        sandbox.generate_submissions(bot, late_in_progress, status="IN_PROGRESS")
    client = variants_client(sandbox)
    run_pipeline(client, paths)
    move_world(sandbox)  # moves the clock past every cursor's lifetime
    second = run_pipeline(client, paths, in_progress_refresh_limit=refresh_limit)
    assert_warehouse_equals_truth(paths, sandbox)
    return second


def test_expired_cursors_make_the_extractor_rescan_that_bot(paths: DataPaths) -> None:
    # 12 pages a bot: the last committed file of pages began at an (expired) cursor too.
    # A small refresh budget: the IN_PROGRESS rows spread over every page are read one GET
    # each, so the live stream starts at its (expired) resume point.
    second = sync_across_cursor_expiry(paths, bots=3, submissions_per_bot=1_150, refresh_limit=5)
    reasons = {b.rescan for b in second.submissions.bots if b.rescan}
    assert reasons == {"cursor_rejected"}


def test_an_expired_page_start_of_in_progress_rows_falls_back_to_gets(paths: DataPaths) -> None:
    # IN_PROGRESS rows only in each bot's last file of pages, which began at a cursor that
    # expired: they cannot be read again in pages, so they are read one GET each.
    second = sync_across_cursor_expiry(
        paths, bots=3, submissions_per_bot=1_150, in_progress_share=0, late_in_progress=3
    )
    fallen_back = [b for b in second.submissions.bots if b.refresh_fallback]
    assert fallen_back and all(b.refreshed > 0 for b in fallen_back)


def test_an_expired_cursor_of_a_short_bot_falls_back_to_its_first_page(paths: DataPaths) -> None:
    # Two pages a bot, written as one file that began at the start: the fallback re-reads the
    # bot from there (or reads it from there anyway for its IN_PROGRESS rows), no rescan needed.
    second = sync_across_cursor_expiry(paths, submissions_per_bot=150)
    resumed = [b for b in second.submissions.bots if b.resume_point_before and b.rows_new]
    assert resumed and all(b.rescan is None for b in resumed)
    assert all(b.resume_fallback or b.rows_reread for b in resumed)


def test_a_deleted_webhook_endpoint_leaves_the_warehouse(paths: DataPaths) -> None:
    sandbox = make_sandbox(bots=1, submissions_per_bot=5, delete_status=204)
    client = variants_client(sandbox)
    kept = client.create_webhook("http://127.0.0.1:9/kept", ["submission.completed"])
    gone = client.create_webhook("http://127.0.0.1:9/gone", ["submission.updated"])
    run_pipeline(client, paths)
    client.delete_webhook(gone.id)
    report = run_pipeline(client, paths)
    assert report.webhooks.webhooks == 1
    with Published(paths) as published:
        assert published.rows("select id from webhooks") == [(kept.id,)]


def test_pro_plan_key_skips_webhooks_and_syncs_the_rest(paths: DataPaths) -> None:
    sandbox = make_sandbox(plan="pro", rate_limit=None)
    client = variants_client(sandbox)
    first = run_pipeline(client, paths)
    assert first.webhooks.skipped == "feature_not_available"
    assert_warehouse_equals_truth(paths, sandbox, webhooks=False)
    move_world(sandbox)
    second = run_pipeline(client, paths)
    assert second.webhooks.skipped == "feature_not_available"
    assert_warehouse_equals_truth(paths, sandbox, webhooks=False)


def test_key_without_the_webhook_scope_skips_webhooks(paths: DataPaths) -> None:
    sandbox = make_sandbox()
    key = sandbox.add_key(["read:intake-bots", "read:submissions"])
    report = run_pipeline(variants_client(sandbox, key), paths)
    assert report.webhooks.skipped == "insufficient_scopes"
    assert_warehouse_equals_truth(paths, sandbox, webhooks=False)


def test_an_edit_to_a_completed_submission_needs_a_full_refresh(paths: DataPaths) -> None:
    """docs/decisions.md #7: an edit to a COMPLETED submission moves neither the bot's count
    nor (here) its updated_at, and no webhook is listened to, so an incremental run cannot see
    it. The documented remedy is a full-refresh backfill, which must then catch it."""
    sandbox = make_sandbox()
    client = variants_client(sandbox)
    run_pipeline(client, paths)
    target = next(s for s in sandbox.truth_submissions() if s["status"] == "COMPLETED")
    sandbox.clock.advance(300)
    sandbox.update_submission(target["intake_bot_id"], target["id"], data={"notes": "late edit"})

    run_pipeline(client, paths)
    stale = warehouse_submissions(paths)[target["id"]]
    assert stale != truth_submissions(sandbox)[target["id"]]  # the limit, stated

    refreshed = run_pipeline(client, paths, full_refresh=True)
    assert_warehouse_equals_truth(paths, sandbox)
    assert refreshed.submissions.total("rows_rescanned") == sandbox.submission_total()


REPLAY_FAULTS = (
    "5xx=0.2@create_submission,drop=0.2@create_submission,truncate=0.1@create_submission"
)


REPLAY_VARIANTS: dict[str, dict[str, Any]] = {
    "clean": {},
    "faults": {"faults": FaultSpec.parse(REPLAY_FAULTS)},
    "other_side": {
        "faults": FaultSpec.parse(REPLAY_FAULTS + ",429=0.1:2@create_submission"),
        "retry_after_in_body": False,
        "timestamp_precision": "s",
        "unknown_extras": True,
        "schema_shape": "legacy",
        "bot_detail_wrapped": False,
        "rate_limit": 15,
    },
}


@pytest.mark.parametrize("name", list(REPLAY_VARIANTS))
def test_replay_against_a_201_server_creates_each_row_once(
    paths: DataPaths, tmp_path: Path, name: str
) -> None:
    """A POST whose answer is lost (dropped, truncated, 500 after the fact) is sent again with
    its Idempotency-Key; the server replays the stored 201 instead of creating a second row."""
    config = REPLAY_VARIANTS[name]
    sandbox = make_sandbox(create_status=201, bots=2, submissions_per_bot=3, **config)
    bot_id = next(b["id"] for b in sandbox.truth_bots() if b["name"] == "Customer Onboarding")
    seeded = {s["id"] for s in sandbox.truth_submissions(bot_id)}
    # A copy: the replay writes its rejects file beside the input, never into the package.
    example = Path(shutil.copy(EXAMPLE_CSV, tmp_path / "submissions.csv"))

    first = replay_csv(variants_client(sandbox), paths, example, bot_id=bot_id)
    created = [s for s in sandbox.truth_submissions(bot_id) if s["id"] not in seeded]
    assert first.created > 0 and first.stopped_reason is None
    assert len(created) == first.created
    if config:  # answers were lost after the server created the row, and the POST was repeated
        assert sandbox.request_count("create_submission", "POST") > first.created
    assert first.created + first.rejected == first.rows

    again = replay_csv(variants_client(sandbox), paths, example, bot_id=bot_id)
    assert again.created == 0 and again.already_created == first.created
    assert len(sandbox.truth_submissions(bot_id)) == len(seeded) + len(created)


def test_a_cursor_expiring_mid_scan_fails_that_bot_not_the_run(paths: DataPaths) -> None:
    """Waiting out a rate limit can outlast a cursor's lifetime: the next page's cursor is
    refused, and so is every cursor of a scan from the start. That bot cannot be read in this
    world; the run must say so for that bot and still sync the others."""
    sandbox = make_sandbox(
        cursor_mode="opaque", cursor_ttl_s=30.0, rate_limit=3, bots=1, submissions_per_bot=400
    )
    big = sandbox.bot_ids()[0]
    small = sandbox.add_bot("Small")
    sandbox.generate_submissions(small, 20)
    client = variants_client(sandbox)
    lake = Lake(paths.parquet)
    with StateStore(paths.state_db) as state:
        bots = sync_bots(client, lake, state, concurrency=1)
        report = sync_submissions(client, lake, state, bots.bots, concurrency=1)
    actions = {bot.intake_bot_id: (bot.action, bot.error or "") for bot in report.bots}
    assert actions[small] == ("synced", "")
    assert actions[big][0] == "failed" and "cursor" in actions[big][1]


def test_a_completion_in_the_same_second_is_kept_without_milliseconds(paths: DataPaths) -> None:
    sandbox = make_sandbox(timestamp_precision="s", bots=2, submissions_per_bot=20)
    bot = sandbox.bot_ids()[0]
    sandbox.clock.advance(10.2)
    [submission] = sandbox.generate_submissions(bot, 1, status="IN_PROGRESS")
    client = variants_client(sandbox)
    run_pipeline(client, paths)
    # The same second: updated_at moves by a millisecond the wire does not show.
    sandbox.update_submission(bot, submission, status="COMPLETED", data={"notes": "done"})
    assert (
        truth_submissions(sandbox)[submission].updated_at
        == warehouse_submissions(paths)[submission].updated_at
    )

    second = run_pipeline(client, paths)
    assert second.submissions.total("refresh_completed") >= 1
    assert warehouse_submissions(paths)[submission].status == "COMPLETED"
    assert_warehouse_equals_truth(paths, sandbox)
