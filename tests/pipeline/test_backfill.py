"""A UI backfill of two bots, through Dagster's GraphQL mutation and its backfill daemon.

These use Dagster's test utilities for the daemon (private modules), which is why the dagster
family is pinned to one release in pyproject.toml.
"""

from __future__ import annotations

import logging
import sqlite3
import sys

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster_graphql.test.utils import execute_dagster_graphql

from iozen_etl.definitions import defs
from iozen_etl.pipeline.automation import incremental_sync_schedule
from iozen_etl.pipeline.launch import run_sync
from iozen_etl.pipeline.partitions import BACKFILL_TAG, BOT_PARTITIONS_NAME, bot_id_of
from iozen_etl.resources import DataDirResource

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""


def _resume_points(world) -> dict[str, str | None]:
    with sqlite3.connect(world.paths.state_db) as db:
        rows = db.execute(
            "select intake_bot_id, resume_point from sync_state where stream = 'submissions'"
        ).fetchall()
    return dict(rows)


def _backfill_from_the_ui(workspace, instance, partitions: list[str]) -> str:
    """Launch a backfill of ``partitions`` as the UI does (GraphQL), and run the daemon's
    iterations until it is done; returns its id."""
    result = execute_dagster_graphql(
        workspace.create_request_context(),
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionNames": partitions,
                "assetSelection": [{"path": ["submissions"]}],
                "tags": [{"key": "iozen/requested_by", "value": "test"}],
            }
        },
    )
    launched = result.data["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    logger = logging.getLogger("backfill-test")
    for _ in range(20):
        list(execute_backfill_iteration(workspace, logger))
        if instance.get_backfill(backfill_id).status != BulkActionStatus.REQUESTED:
            break
    assert instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
    return str(backfill_id)


# Dagster's GraphQL test helper leaves an event loop's shutdown coroutine un-awaited.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.slow
def test_ui_backfill_of_two_bots_rescans_only_them_and_keeps_resume_points(world):
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name="iozen_etl.definitions"),
        location_name="iozen",
    )
    with (
        dg.instance_for_test(
            synchronous_run_coordinator=True, synchronous_run_launcher=True
        ) as instance,
        create_test_daemon_workspace_context(
            InProcessWorkspaceLoadTarget(origin), instance
        ) as workspace,
    ):
        assert run_sync(defs, instance, say=lambda line: None).success
        bots = instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
        chosen = [bots[1], bots[3]]
        live_before = _resume_points(world)
        lists_before = world.sandbox.request_count("submissions")

        backfill_id = _backfill_from_the_ui(workspace, instance, chosen)
        runs = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
        # Two non-adjacent bots: Dagster makes one run per contiguous stretch.
        assert len(runs) == 2
        assert all(run.is_success for run in runs)
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
