"""IN_PROGRESS submissions read again in pages or one GET each, whichever costs fewer requests,
checked against the sandbox's truth."""

from __future__ import annotations

import sqlite3
from typing import Any

from iozen_etl.sandbox import Sandbox, SandboxConfig
from iozen_etl.sync.state import StateStore
from tests.support.sandbox import fake_time_client
from tests.support.sync import Workspace, in_progress_counts
from tests.support.truth import assert_lake_matches_truth

UNLIMITED = 10**9


def complete(box: Sandbox, how_many: int) -> list[dict[str, Any]]:
    waiting = [s for s in box.truth_submissions() if s["status"] == "IN_PROGRESS"]
    assert len(waiting) >= how_many
    box.clock.advance(30)
    chosen = waiting[:: max(1, len(waiting) // how_many)][:how_many]
    for item in chosen:
        box.update_submission(item["intake_bot_id"], item["id"], status="COMPLETED")
    return chosen


def test_forty_bots_with_in_progress_rows_are_exact_after_one_incremental_sync(tmp_path):
    # 40 bots x 60 submissions, a tenth IN_PROGRESS, 15 of them completed in ioZen: one page
    # a bot covers every IN_PROGRESS row of it, within the default budget of 100 requests.
    box = Sandbox(
        SandboxConfig(
            seed=11, rate_limit=UNLIMITED, bots=40, submissions_per_bot=60, in_progress_share=0.1
        )
    )
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    with StateStore(work.paths.state_db) as state:
        holding = in_progress_counts(state)
    complete(box, 15)
    before = box.request_count("submission") + box.request_count("submissions")
    _, subs = work.sync(fake_time_client(box), in_progress_refresh_limit=100)
    # Per bot, its pages (one per 100 submissions) or a GET per row, whichever is fewer.
    spent = box.request_count("submission") + box.request_count("submissions") - before
    pages = {bot: -(-len(box.truth_submissions(bot)) // 100) for bot in holding}
    assert len(holding) <= spent <= sum(min(n, pages[bot]) for bot, n in holding.items())
    assert spent < sum(holding.values()) / 2  # against one GET per row
    assert len([b for b in subs.bots if b.refreshed]) == len(holding)
    assert subs.total("refresh_completed") == 15
    assert subs.total("in_progress_unchecked") == 0
    assert_lake_matches_truth(tmp_path, box)


def test_a_few_rows_in_a_long_bot_are_read_one_get_each(tmp_path):
    # 1,500 settled submissions, then two IN_PROGRESS ones: their pages began 1,000 rows back
    # (six requests), two GETs cost less.
    box = Sandbox(
        SandboxConfig(rate_limit=UNLIMITED, bots=1, submissions_per_bot=1_500, in_progress_share=0)
    )
    (bot,) = box.bot_ids()
    box.generate_submissions(bot, 2, status="IN_PROGRESS")
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    complete(box, 2)
    gets, pages = box.request_count("submission"), box.request_count("submissions")
    _, subs = work.sync(fake_time_client(box))
    assert box.request_count("submission") - gets == 2
    assert box.request_count("submissions") == pages
    assert subs.total("refresh_completed") == 2
    assert_lake_matches_truth(tmp_path, box)


def test_a_changed_bot_reads_its_in_progress_page_within_the_pages_it_reads_anyway(tmp_path):
    box = Sandbox(SandboxConfig(seed=5, rate_limit=UNLIMITED, bots=1, submissions_per_bot=60))
    (bot,) = box.bot_ids()
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    done = complete(box, 2)
    box.generate_submissions(bot, 5, status="COMPLETED")
    gets, pages = box.request_count("submission"), box.request_count("submissions")
    _, subs = work.sync(fake_time_client(box))
    (report,) = subs.bots
    # One request: the page from the start holds the old rows and the five new ones.
    assert box.request_count("submissions") - pages == 1
    assert box.request_count("submission") == gets
    assert report.rows_new == 5 and report.rows_reread == len(box.truth_submissions(bot)) - 5
    assert report.refresh_completed == len(done)
    assert_lake_matches_truth(tmp_path, box)


def test_rows_of_an_older_state_file_are_read_one_get_each(tmp_path):
    # A state file from before page positions were kept: nothing says where the rows sit.
    box = Sandbox(SandboxConfig(seed=5, rate_limit=UNLIMITED, bots=1, submissions_per_bot=60))
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    with sqlite3.connect(work.paths.state_db) as db:
        db.execute("UPDATE in_progress SET page_start = NULL, page_position = NULL")
    with StateStore(work.paths.state_db) as state:
        tracked = sum(in_progress_counts(state).values())
    complete(box, 1)
    gets, pages = box.request_count("submission"), box.request_count("submissions")
    _, subs = work.sync(fake_time_client(box))
    assert subs.total("refresh_completed") == 1
    assert box.request_count("submission") - gets == tracked
    assert box.request_count("submissions") == pages
    assert_lake_matches_truth(tmp_path, box)
