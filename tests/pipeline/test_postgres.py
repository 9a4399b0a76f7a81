"""The production instance (``dagster_home/production/dagster.yaml``) on a real PostgreSQL server:
the sync and a UI backfill work on it, and what Dagster records is in PostgreSQL, nowhere else.

Each test copies the repository's production file into a Dagster home of its own and points
its DAGSTER_PG_* variables at a new database on the session's server (``tests.support.postgres``).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
import sqlalchemy
from dagster._core.execution.backfill import BulkActionStatus

from iozen_etl.definitions import defs
from iozen_etl.pipeline.launch import open_instance, run_sync
from iozen_etl.pipeline.partitions import BACKFILL_TAG, BOT_PARTITIONS_NAME, bot_id_of
from tests.support.backfill import run_ui_backfill
from tests.support.postgres import production_home, with_in_process_launcher


def _rows(database, sql: str, **params) -> list[tuple[Any, ...]]:
    """What PostgreSQL itself holds, read without Dagster."""
    engine = database.engine()
    try:
        with engine.connect() as con:
            return [tuple(row) for row in con.execute(sqlalchemy.text(sql), params)]
    finally:
        engine.dispose()


def _materialized_partitions(instance, runs) -> set[str]:
    """The ``submissions`` partitions the given runs materialized."""
    return {
        event.dagster_event.partition
        for run in runs
        for event in instance.all_logs(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        if event.dagster_event.asset_key == dg.AssetKey("submissions")
    }


def test_the_sync_on_the_production_instance_records_its_runs_and_events_in_postgresql(
    world, postgres_db, tmp_path, monkeypatch
):
    home = production_home(tmp_path / "dagster_home", postgres_db, monkeypatch)
    # The command line's instance: DAGSTER_HOME is set, so it is the production file's.
    with open_instance() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.run_queue_config is not None
        assert concurrency.run_queue_config.max_concurrent_runs == 10

        first = run_sync(defs, instance, say=lambda line: None)
        assert first.success, first.reason
        assert first.runs == 3  # the listing, the bots it discovered, the load
        assert world.warehouse_submissions() == world.truth_submissions()

        # The next sync reads the bot partitions and resume facts back from PostgreSQL.
        changed = world.sandbox.bot_ids()[2]
        world.sandbox.generate_submissions(changed, 5)
        second = run_sync(defs, instance, say=lambda line: None)
        assert second.success, second.reason
        assert second.runs == 2  # every known bot, then the load
        assert world.warehouse_submissions() == world.truth_submissions()

        runs = instance.get_runs()
        events = sum(len(instance.all_logs(run.run_id)) for run in runs)
        bots = instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
        (sync_run,) = instance.get_runs(dg.RunsFilter(job_name="sync_job"), limit=1)
        assert _materialized_partitions(instance, [sync_run]) == {
            key for key in bots if bot_id_of(key) == changed
        }

    # Read back from PostgreSQL's own tables: every run, every event and every bot partition.
    stored_runs = _rows(postgres_db, "select run_id, status from runs")
    assert sorted(stored_runs) == sorted((run.run_id, "SUCCESS") for run in runs)
    assert len(stored_runs) == 5
    ((stored_events,),) = _rows(postgres_db, "select count(*) from event_logs")
    assert stored_events == events > 0
    stored_bots = _rows(
        postgres_db,
        "select partition from dynamic_partitions where partitions_def_name = :name",
        name=BOT_PARTITIONS_NAME,
    )
    assert sorted(key for (key,) in stored_bots) == sorted(bots)
    assert len(bots) == len(world.sandbox.bot_ids())

    # Nothing of Dagster's went to a SQLite file, and the password is in no event.
    assert [path for path in home.rglob("*") if path.suffix in (".db", ".sqlite")] == []
    ((leaks,),) = _rows(
        postgres_db,
        "select count(*) from event_logs where strpos(event, :password) > 0",
        password=postgres_db.password,
    )
    assert leaks == 0


# Dagster's GraphQL test helper leaves an event loop's shutdown coroutine un-awaited.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.slow
def test_a_ui_backfill_on_the_production_instance_resyncs_exactly_the_chosen_bots(
    world, postgres_db, tmp_path, monkeypatch
):
    home = production_home(tmp_path / "dagster_home", postgres_db, monkeypatch)
    with with_in_process_launcher(home) as instance:
        assert run_sync(defs, instance, say=lambda line: None).success
        bots = instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
        chosen = [bots[0], bots[2], bots[3]]
        lists_before = world.sandbox.request_count("submissions")

        backfill = run_ui_backfill(instance, chosen)
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS.value
        # One run per contiguous stretch of the chosen bots: 0, then 2..3.
        assert (backfill.runs, backfill.runs_succeeded) == (2, 2)
        backfill_runs = [run for run in instance.get_runs() if BACKFILL_TAG in run.tags]
        # A backfill marks every bot it synced, and only those.
        assert _materialized_partitions(instance, backfill_runs) == set(chosen)
        # Only the chosen bots were read again, each from its first page.
        expected_pages = sum(
            -(-len(world.sandbox.truth_submissions(bot_id_of(key))) // 100) or 1 for key in chosen
        )
        assert world.sandbox.request_count("submissions") - lists_before == expected_pages
        assert world.warehouse_submissions() == world.truth_submissions()

    # The backfill and its runs are PostgreSQL's rows.
    ((status,),) = _rows(postgres_db, "select status from bulk_actions")
    assert status == BulkActionStatus.COMPLETED_SUCCESS.value
    backfill_ids = {run.run_id for run in backfill_runs}
    stored = _rows(postgres_db, "select run_id from runs")
    assert backfill_ids <= {run_id for (run_id,) in stored}
