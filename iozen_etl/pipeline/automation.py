"""Jobs, schedules and sensors: when a workspace's assets run, and over which bots.

``build_automation`` makes one workspace's set, named by its scope; the module's own
``sync_job``, ``warehouse_sensor``, ... are those of the workspace of the environment.
"""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations at definition time and needs real types, not strings.
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import dagster as dg

from iozen_etl.pipeline.assets import ENVIRONMENT_ASSETS, WorkspaceAssets
from iozen_etl.pipeline.partitions import (
    BOT_PARTITIONS_NAME,
    CSV_PARTITIONS_NAME,
    INCREMENTAL,
    RECONCILE,
    bot_id_of,
    range_tags,
    usable_bot_keys,
)
from iozen_etl.pipeline.replay_assets import submission_replay
from iozen_etl.pipeline.reporting import lake_files_written
from iozen_etl.pipeline.scope import ENVIRONMENT, Scope
from iozen_etl.receiver import EventStore
from iozen_etl.replay import inbox_files
from iozen_etl.resources import DataDirResource
from iozen_etl.settings import DataPaths, reconcile_cron_from_env, sync_cron_from_env
from iozen_etl.sync.state import SCHEMA_STREAM, StateStore
from iozen_etl.warehouse import files_owed

# An inbox file is replayed once it has not changed for this long (a copy may still be running).
INBOX_SETTLE_S = 10.0
# A sync that changed nothing loads nothing; the warehouse is still loaded this often after a
# sync, so its sync_freshness check and freshness policy (warn at one hour) stay green.
WAREHOUSE_HEARTBEAT_S = 30 * 60
# The webhook events sensor looks this often (Dagster's daemon ticks sensors no faster than
# about every 5 s); a failed events run is tried again after EVENTS_RETRY_S.
EVENTS_SENSOR_INTERVAL_S = 5
EVENTS_RETRY_S = 60
# A failed load is tried again after this long (a full disk, a fault that lasts: one failed run
# per interval, not one per sensor tick).
LOAD_RETRY_S = 5 * 60
# Extract events read at a time, newest first, looking for one that wrote files.
EVENTS_PER_FETCH = 100


class WorkspaceAutomation(NamedTuple):
    """One workspace's jobs, schedules and sensors."""

    # Unresolved asset jobs: Dagster does not export their class.
    jobs: list[Any]
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]


def build_automation(
    scope: Scope, assets: WorkspaceAssets, replay: dg.AssetsDefinition
) -> WorkspaceAutomation:
    """The jobs, schedules and sensors of one workspace, named by ``scope``."""
    sync_job = dg.define_asset_job(
        scope.name("sync_job"),
        selection=[assets.intake_bots, assets.webhooks, assets.submissions],
        description=(
            "Bots, webhooks and the run's bots' submissions into the lake; the warehouse sensor "
            "loads what changed."
        ),
    )
    load_job = dg.define_asset_job(
        scope.name("load_job"),
        selection=[assets.warehouse],
        description="Load new Parquet files into the warehouse.",
    )
    events_job = dg.define_asset_job(
        scope.name("events_job"),
        selection=[assets.submission_events, assets.warehouse],
        description=(
            "What the kept webhook events name, fetched by id into the lake, then the warehouse "
            "loaded: a change in ioZen in the warehouse within seconds."
        ),
    )
    replay_job = dg.define_asset_job(
        scope.name("replay_job"),
        selection=[replay],
        description="Replay one inbox CSV file as idempotent submission POSTs.",
    )

    @dg.schedule(
        name=scope.name("incremental_sync_schedule"),
        cron_schedule=sync_cron_from_env(),
        job=sync_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Incremental sync of every bot in one run (cron from IOZEN_SYNC_CRON).",
    )
    def incremental_sync_schedule(
        context: dg.ScheduleEvaluationContext, data_dir: DataDirResource
    ) -> dg.RunRequest:
        return _all_bots_request(context, data_dir.paths, INCREMENTAL, scope)

    @dg.schedule(
        name=scope.name("nightly_reconcile_schedule"),
        cron_schedule=reconcile_cron_from_env(),
        job=sync_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            "Nightly: every bot in one run; bots whose lake count disagrees with the API's "
            "submission_count are rescanned in full (cron from IOZEN_RECONCILE_CRON)."
        ),
    )
    def nightly_reconcile_schedule(
        context: dg.ScheduleEvaluationContext, data_dir: DataDirResource
    ) -> dg.RunRequest:
        return _all_bots_request(context, data_dir.paths, RECONCILE, scope)

    @dg.sensor(
        name=scope.name("new_bots_sensor"),
        job=sync_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Syncs bots discovered by the last bot listing that have never been synced.",
    )
    def new_bots_sensor(
        context: dg.SensorEvaluationContext, data_dir: DataDirResource
    ) -> dg.SensorResult | dg.SkipReason:
        return new_bots_request(context, data_dir.paths, scope)

    @dg.sensor(
        name=scope.name("warehouse_sensor"),
        job=load_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Loads the warehouse after a run wrote new Parquet files (a scheduled sync, a "
            "backfill), and at least every 30 minutes so its freshness says when the API was "
            "last read."
        ),
    )
    def warehouse_sensor(
        context: dg.SensorEvaluationContext, data_dir: DataDirResource
    ) -> dg.RunRequest | dg.SkipReason:
        return warehouse_load_request(
            context.instance, data_dir.paths, now=time.time(), scope=scope
        )

    @dg.sensor(
        name=scope.name("webhook_events_sensor"),
        job=events_job,
        minimum_interval_seconds=EVENTS_SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Starts a run for the webhook events `iozen-etl webhooks serve` kept: every event "
            "waiting then goes into that one run."
        ),
    )
    def webhook_events_sensor(
        context: dg.SensorEvaluationContext, data_dir: DataDirResource
    ) -> dg.RunRequest | dg.SkipReason:
        return events_run_request(context.instance, data_dir.paths, now=time.time(), scope=scope)

    @dg.sensor(
        name=scope.name("inbox_sensor"),
        job=replay_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Replays CSV files dropped into the inbox folder of the data directory (a "
            "workspace's own: workspaces/<name>/inbox) once they stop changing."
        ),
    )
    def inbox_sensor(
        context: dg.SensorEvaluationContext, data_dir: DataDirResource
    ) -> dg.SensorResult | dg.SkipReason:
        return inbox_requests(context, scope.paths(data_dir.paths).inbox, scope)

    return WorkspaceAutomation(
        jobs=[sync_job, load_job, events_job, replay_job],
        schedules=[incremental_sync_schedule, nightly_reconcile_schedule],
        sensors=[new_bots_sensor, warehouse_sensor, webhook_events_sensor, inbox_sensor],
    )


def bot_keys(
    context: dg.ScheduleEvaluationContext | dg.SensorEvaluationContext,
    paths: DataPaths,
    scope: Scope = ENVIRONMENT,
) -> list[str]:
    """The bot partitions a run can name, in discovery order.

    A blank key (the UI's "Add partition" dialog accepts one) names no bot and cannot be a
    range's end (Dagster drops an empty range tag, and every later run would fail): it is
    removed here, with a warning on the tick, so no such key stops the schedules. A key whose
    id no bot listing has seen is left out, with a warning that says how to remove it.
    """
    partitions = scope.name(BOT_PARTITIONS_NAME)
    keys = context.instance.get_dynamic_partitions(partitions)
    usable = usable_bot_keys(keys)
    blank = [key for key in keys if key not in usable]
    for key in blank:
        context.instance.delete_dynamic_partition(partitions, key)
    if blank:
        context.log.warning(
            f"removed {len(blank)} blank bot partition key(s) {blank!r}: no bot has such an id"
        )
    seen = _bots_listed(scope.paths(paths))
    unknown = [key for key in usable if seen and bot_id_of(key) not in seen]
    if unknown:
        # Typed into "Add partition", say: never a range's end and never a new bot to sync; a
        # run whose range spans one reports it as no longer listed.
        context.log.warning(
            f"{len(unknown)} bot partition key(s) name no bot the bot listing has seen: "
            f'{", ".join(unknown[:10])}. Remove one with: python -c "import dagster as dg; '
            f"dg.DagsterInstance.get().delete_dynamic_partition('{partitions}', 'KEY')\""
        )
    return [key for key in usable if key not in unknown]


def _bots_listed(paths: DataPaths) -> set[str]:
    """Ids of every bot a bot listing has recorded (empty before the first listing)."""
    if not paths.state_db.exists():
        return set()
    with StateStore(paths.state_db) as state:
        return set(state.all(SCHEMA_STREAM))


def _all_bots_request(
    context: dg.ScheduleEvaluationContext, paths: DataPaths, mode: str, scope: Scope
) -> dg.RunRequest:
    keys = bot_keys(context, paths, scope)
    if not keys:
        # Nothing discovered yet: a run of the bot listing alone registers the partitions,
        # and the new-bots sensor then syncs their submissions.
        return dg.RunRequest(asset_selection=[scope.key("intake_bots"), scope.key("webhooks")])
    return dg.RunRequest(tags=range_tags(keys[0], keys[-1], mode))


def new_bots_request(
    context: dg.SensorEvaluationContext, paths: DataPaths, scope: Scope
) -> dg.SensorResult | dg.SkipReason:
    """A run of the bots the bot listing discovered that were never synced."""
    keys = bot_keys(context, paths, scope)
    synced = context.instance.get_materialized_partitions(scope.key("submissions"))
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
                asset_selection=[scope.key("submissions")],
                tags=tags,
            )
        ]
    )


def warehouse_load_request(
    instance: dg.DagsterInstance, paths: DataPaths, *, now: float, scope: Scope = ENVIRONMENT
) -> dg.RunRequest | dg.SkipReason:
    """A load after new lake files, again after a failed load, or after a sync once the last
    load is older than the heartbeat (``now`` in Unix seconds)."""
    retry = _retry_of_failed_load(instance, scope.paths(paths), now=now, scope=scope)
    if retry is not None:
        return retry
    last_load = instance.fetch_materializations(scope.key("warehouse"), limit=1).records
    after = last_load[0].storage_id if last_load else None
    written = newest_lake_files_event(instance, after, scope)
    if written is not None:
        return dg.RunRequest(run_key=f"load-after:{written}")
    age = now - last_load[0].timestamp if last_load else None
    if age is not None and age > WAREHOUSE_HEARTBEAT_S:
        extracted = instance.fetch_materializations(scope.key("webhooks"), limit=1).records
        if extracted and extracted[0].storage_id > (after or 0):
            return dg.RunRequest(run_key=f"heartbeat-after:{extracted[0].storage_id}")
    return dg.SkipReason("no new Parquet files since the last load")


def _retry_of_failed_load(
    instance: dg.DagsterInstance, paths: DataPaths, *, now: float, scope: Scope
) -> dg.RunRequest | None:
    """A new load once the last one failed, while the lake still holds files it left out.

    The failed run spent its run key: asked again under that key, Dagster would skip the
    request, and the published warehouse would wait for a sync that writes new files.
    """
    last = _newest_run(instance, scope.name("load_job"))
    if last is None or last.dagster_run.status != dg.DagsterRunStatus.FAILURE:
        return None
    if not _waited_out(last, now, LOAD_RETRY_S) or not files_owed(paths):
        return None
    return dg.RunRequest(run_key=f"retry-after:{last.dagster_run.run_id}")


def _newest_run(instance: dg.DagsterInstance, job_name: str) -> dg.RunRecord | None:
    """The newest run of the job ``job_name``, or None."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=1)
    return records[0] if records else None


def _waited_out(record: dg.RunRecord, now: float, wait_s: float) -> bool:
    """Whether the run ``record`` ended at least ``wait_s`` before ``now``."""
    return record.end_time is not None and now - record.end_time >= wait_s


def newest_lake_files_event(
    instance: dg.DagsterInstance, after: int | None, scope: Scope = ENVIRONMENT
) -> int | None:
    """Storage id of the newest extract event after ``after`` that reports new lake files."""
    newest: int | None = None
    submissions = scope.key("submissions")
    for key in (scope.key("intake_bots"), scope.key("webhooks"), submissions):
        # The run-level facts: the materializations of the unpartitioned extracts, and the
        # observation that closes each ``submissions`` step (its bots' own events carry none).
        fetch = (
            instance.fetch_observations if key == submissions else instance.fetch_materializations
        )
        records_filter = dg.AssetRecordsFilter(asset_key=key, after_storage_id=after)
        cursor: str | None = None
        while True:
            result = fetch(records_filter, limit=EVENTS_PER_FETCH, cursor=cursor)
            hit = next((r.storage_id for r in result.records if _wrote_files(r)), None)
            if hit is not None:
                newest = max(newest or 0, hit)
                break
            if not result.has_more:
                break
            cursor = result.cursor
    return newest


def _wrote_files(record: dg.EventLogRecord) -> bool:
    event = record.asset_materialization or record.asset_observation
    if event is None or event.partition is not None:
        return False
    return lake_files_written({k: v.value for k, v in event.metadata.items()}) > 0


def events_run_request(
    instance: dg.DagsterInstance, paths: DataPaths, *, now: float, scope: Scope = ENVIRONMENT
) -> dg.RunRequest | dg.SkipReason:
    """One run for every event waiting, unless a run is already taking them (``now`` in Unix
    seconds)."""
    paths = scope.paths(paths)
    if not paths.webhook_events.exists():
        return dg.SkipReason("no webhook event received yet")
    with EventStore(paths.webhook_events) as store:
        waiting = store.newest_pending()
    if waiting is None:
        return dg.SkipReason("no webhook event waiting")
    count, newest = waiting
    last = _newest_run(instance, scope.name("events_job"))
    if last is not None:
        if not last.dagster_run.is_finished:
            return dg.SkipReason(f"{count} events wait for the run in progress to finish")
        failed = last.dagster_run.status == dg.DagsterRunStatus.FAILURE
        if failed and not _waited_out(last, now, EVENTS_RETRY_S):
            return dg.SkipReason(f"{count} events wait: the last run failed, tried again soon")
    # Keyed by the newest event and the last run: a run that left events pending (a fetch that
    # failed) is followed by another, not skipped as a duplicate.
    after = last.dagster_run.run_id if last is not None else "none"
    return dg.RunRequest(run_key=f"events:{newest}:after:{after}")


def inbox_requests(
    context: dg.SensorEvaluationContext, inbox: Path, scope: Scope
) -> dg.SensorResult | dg.SkipReason:
    """A replay run for each settled CSV file of the inbox, new or changed."""
    files = list(_settled_csv_files(inbox))
    if not files:
        return dg.SkipReason(f"no settled CSV files in {inbox}")
    partitions = scope.name(CSV_PARTITIONS_NAME)
    known = set(context.instance.get_dynamic_partitions(partitions))
    new_keys = [key for key, _ in files if key not in known]
    if new_keys:
        # Registered here rather than through the result, so the run requests below name
        # partitions that already exist whoever evaluates the tick.
        context.instance.add_dynamic_partitions(partitions, new_keys)
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


# The workspace of the environment: what a single-workspace deployment defines.
ENVIRONMENT_AUTOMATION = build_automation(ENVIRONMENT, ENVIRONMENT_ASSETS, submission_replay)
sync_job, load_job, events_job, replay_job = ENVIRONMENT_AUTOMATION.jobs
incremental_sync_schedule, nightly_reconcile_schedule = ENVIRONMENT_AUTOMATION.schedules
new_bots_sensor, warehouse_sensor, webhook_events_sensor, inbox_sensor = (
    ENVIRONMENT_AUTOMATION.sensors
)
