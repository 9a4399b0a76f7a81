"""Jobs, schedules and sensors: when the assets run, and over which bots."""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations at definition time and needs real types, not strings.
import os
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from iozen_etl.pipeline.assets import intake_bots, submissions, warehouse, webhooks
from iozen_etl.pipeline.partitions import (
    BOT_PARTITIONS_NAME,
    CSV_PARTITIONS_NAME,
    INCREMENTAL,
    RECONCILE,
    range_tags,
)
from iozen_etl.pipeline.replay_assets import submission_replay
from iozen_etl.replay import inbox_files
from iozen_etl.settings import DataPaths

SYNC_CRON_ENV = "IOZEN_SYNC_CRON"
RECONCILE_CRON_ENV = "IOZEN_RECONCILE_CRON"
DEFAULT_SYNC_CRON = "*/15 * * * *"
DEFAULT_RECONCILE_CRON = "0 3 * * *"
# An inbox file is replayed once it has not changed for this long (a copy may still be running).
INBOX_SETTLE_S = 10.0

sync_job = dg.define_asset_job(
    "sync_job",
    selection=[intake_bots, webhooks, submissions, warehouse],
    description="Bots, webhooks, the run's bots' submissions, then the warehouse load.",
)
load_job = dg.define_asset_job(
    "load_job", selection=[warehouse], description="Load new Parquet files into the warehouse."
)
replay_job = dg.define_asset_job(
    "replay_job",
    selection=[submission_replay],
    description="Replay one inbox CSV file as idempotent submission POSTs.",
)


def _all_bots_request(context: dg.ScheduleEvaluationContext, mode: str) -> dg.RunRequest:
    keys = context.instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
    if not keys:
        # Nothing discovered yet: a run of the bot listing alone registers the partitions,
        # and the new-bots sensor then syncs their submissions.
        return dg.RunRequest(asset_selection=[intake_bots.key, webhooks.key])
    return dg.RunRequest(tags=range_tags(keys[0], keys[-1], mode))


@dg.schedule(
    cron_schedule=os.environ.get(SYNC_CRON_ENV, DEFAULT_SYNC_CRON),
    job=sync_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Incremental sync of every bot in one run (cron from IOZEN_SYNC_CRON).",
)
def incremental_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return _all_bots_request(context, INCREMENTAL)


@dg.schedule(
    cron_schedule=os.environ.get(RECONCILE_CRON_ENV, DEFAULT_RECONCILE_CRON),
    job=sync_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Nightly: every bot in one run; bots whose warehouse count disagrees with the API's "
        "submission_count are rescanned in full (cron from IOZEN_RECONCILE_CRON)."
    ),
)
def nightly_reconcile_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return _all_bots_request(context, RECONCILE)


@dg.sensor(
    job=sync_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Syncs bots discovered by the last bot listing that have never been synced.",
)
def new_bots_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    keys = context.instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
    synced = context.instance.get_materialized_partitions(submissions.key)
    new = [key for key in keys if key not in synced]
    if not new:
        return dg.SkipReason("every discovered bot has been synced")
    # Keys are appended in discovery order, so never-synced bots usually form one stretch at
    # the end; the range may include synced bots in between, which an incremental run skips.
    tags = range_tags(new[0], new[-1], INCREMENTAL)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"new-bots:{new[0]}:{new[-1]}:{len(new)}",
                asset_selection=[submissions.key, warehouse.key],
                tags=tags,
            )
        ]
    )


@dg.sensor(
    job=load_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Loads the warehouse after a run (a UI backfill, say) left new Parquet files.",
)
def warehouse_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    latest_load = _latest_timestamp(context.instance, warehouse.key)
    latest_extract = max(
        _latest_timestamp(context.instance, key)
        for key in (intake_bots.key, submissions.key, webhooks.key)
    )
    if latest_extract <= latest_load:
        return dg.SkipReason("the warehouse is newer than every extract")
    return dg.RunRequest(run_key=f"load-after:{latest_extract}")


def _latest_timestamp(instance: dg.DagsterInstance, key: dg.AssetKey) -> float:
    event = instance.get_latest_materialization_event(key)
    return event.timestamp if event is not None else 0.0


@dg.sensor(
    job=replay_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Replays CSV files dropped into $IOZEN_DATA_DIR/inbox once they stop changing.",
)
def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    inbox = DataPaths.from_env().inbox
    files = list(_settled_csv_files(inbox))
    if not files:
        return dg.SkipReason(f"no settled CSV files in {inbox}")
    known = set(context.instance.get_dynamic_partitions(CSV_PARTITIONS_NAME))
    new_keys = [key for key, _ in files if key not in known]
    if new_keys:
        # Registered here rather than through the result, so the run requests below name
        # partitions that already exist whoever evaluates the tick.
        context.instance.add_dynamic_partitions(CSV_PARTITIONS_NAME, new_keys)
    # A file replaced with new content is a new run; the ledger makes re-sent rows no-ops.
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"{key}@{mtime_ns}", partition_key=key) for key, mtime_ns in files
        ]
    )


def _settled_csv_files(inbox: Path) -> Iterator[tuple[str, int]]:
    """(partition key, mtime) of each settled CSV in the inbox or one folder down (``<bot>/``)."""
    folders = [inbox, *sorted(p for p in inbox.iterdir() if p.is_dir())] if inbox.is_dir() else []
    now = time.time()
    for folder in folders:
        for path in inbox_files(folder, now, INBOX_SETTLE_S):
            yield path.relative_to(inbox).as_posix(), path.stat().st_mtime_ns


__all__ = [
    "inbox_sensor",
    "incremental_sync_schedule",
    "load_job",
    "new_bots_sensor",
    "nightly_reconcile_schedule",
    "replay_job",
    "sync_job",
    "warehouse_sensor",
]
