"""A UI backfill of two bots, through Dagster's GraphQL mutation and its backfill daemon.

The backfill is launched as the UI launches one (``tests.support.backfill``).
"""

from __future__ import annotations

import sqlite3

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus

from iozen_etl.definitions import defs
from iozen_etl.pipeline.automation import incremental_sync_schedule
from iozen_etl.pipeline.launch import run_sync
from iozen_etl.pipeline.partitions import BOT_PARTITIONS_NAME, bot_id_of
from iozen_etl.resources import DataDirResource
from tests.support.backfill import run_ui_backfill


def _resume_points(world) -> dict[str, str | None]:
    with sqlite3.connect(world.paths.state_db) as db:
        rows = db.execute(
            "select intake_bot_id, resume_point from sync_state where stream = 'submissions'"
        ).fetchall()
    return dict(rows)


# Dagster's GraphQL test helper leaves an event loop's shutdown coroutine un-awaited.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.slow
def test_ui_backfill_of_two_bots_rescans_only_them_and_keeps_resume_points(world):
    with dg.instance_for_test(
        synchronous_run_coordinator=True, synchronous_run_launcher=True
    ) as instance:
        assert run_sync(defs, instance, say=lambda line: None).success
        bots = instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
        chosen = [bots[1], bots[3]]
        live_before = _resume_points(world)
        lists_before = world.sandbox.request_count("submissions")

        backfill = run_ui_backfill(instance, chosen)
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS.value
        # Two non-adjacent bots: Dagster makes one run per contiguous stretch.
        assert backfill.runs == 2
        assert backfill.runs_succeeded == 2
        synced = instance.get_materialized_partitions(dg.AssetKey("submissions"))
        assert set(chosen) <= synced

        # Only the chosen bots were read again, from their first page.
        expected_pages = sum(
            -(-len(world.sandbox.truth_submissions(bot_id_of(key))) // 100) or 1 for key in chosen
        )
        assert world.sandbox.request_count("submissions") - lists_before == expected_pages
        # A full refresh never moves a live resume point backwards.
        assert _resume_points(world) == live_before
        assert world.warehouse_submissions() == world.truth_submissions()

        # The next scheduled run is still incremental: nothing changed, so no bot's list is read
        # past its resume point; a bot holding IN_PROGRESS rows has its one page read again.
        (request,) = incremental_sync_schedule.evaluate_tick(
            dg.build_schedule_context(instance=instance, resources={"data_dir": DataDirResource()})
        ).run_requests
        lists_before = world.sandbox.request_count("submissions")
        scheduled = defs.resolve_job_def("sync_job").execute_in_process(
            instance=instance, tags=request.tags
        )
        assert scheduled.success
        holding = {
            s["intake_bot_id"]
            for s in world.sandbox.truth_submissions()
            if s["status"] == "IN_PROGRESS"
        }
        assert all(len(world.sandbox.truth_submissions(bot_id_of(k))) <= 100 for k in bots)
        assert world.sandbox.request_count("submissions") - lists_before == len(holding)
        assert _resume_points(world) == live_before
