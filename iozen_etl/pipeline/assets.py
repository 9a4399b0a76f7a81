"""The read path as Dagster assets: bots -> submissions per bot -> warehouse, for one workspace.

Assets are thin: they pick the bots and the mode from the run, call the sync engine or the
warehouse load, and report facts as metadata. Counts only: answer values never reach metadata.
``build_assets`` makes one workspace's set (``pipeline/scope.py`` names them); the module's own
``intake_bots``, ``submissions``, ... are the set of the workspace of the environment.
"""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations at definition time and needs real types, not strings.
import time
import warnings
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, NamedTuple

import dagster as dg

from iozen_etl.api import WaitCeilingReached
from iozen_etl.pipeline.partitions import (
    BACKFILL_TAG,
    BOT_PARTITIONS_NAME,
    FULL,
    ON_CEILING_TAG,
    RECONCILE,
    bot_id_of,
    bot_partition_key,
    sync_mode,
)
from iozen_etl.pipeline.progress import SyncProgress
from iozen_etl.pipeline.reconcile import bots_off_count
from iozen_etl.pipeline.reporting import (
    bot_events,
    bots_metadata,
    bots_synced_check,
    events_metadata,
    load_metadata,
    run_metadata,
    run_observation,
    webhooks_metadata,
)
from iozen_etl.pipeline.scope import ENVIRONMENT, Scope
from iozen_etl.pipeline.warehouse_process import run_in_child
from iozen_etl.receiver import EventStore
from iozen_etl.resources import DataDirResource, IozenApiResource
from iozen_etl.settings import DataPaths
from iozen_etl.sync.bots import sync_bots
from iozen_etl.sync.events import apply_events
from iozen_etl.sync.lake import Lake
from iozen_etl.sync.lock import sync_lock
from iozen_etl.sync.reports import SubmissionsReport
from iozen_etl.sync.state import StateStore
from iozen_etl.sync.submissions import sync_submissions
from iozen_etl.sync.webhooks import sync_webhooks
from iozen_etl.warehouse import load_warehouse

# Webhook events taken by one run: a burst becomes one run; a larger one, a few.
EVENTS_PER_RUN = 5_000
BOTS_SYNCED_CHECK = "bots_synced"
# Seconds Dagster waits before retrying a step that stopped at the rate budget's wait ceiling:
# a whole rate window, so the budget is full again when the step resumes.
CEILING_RETRY_DELAY_S = 60
CEILING_RETRIES = 3


class WorkspaceAssets(NamedTuple):
    """One workspace's read path, in flow order."""

    intake_bots: dg.AssetsDefinition
    webhooks: dg.AssetsDefinition
    submissions: dg.AssetsDefinition
    submission_events: dg.AssetsDefinition
    warehouse: dg.AssetsDefinition


def _stop_at_ceiling(context: dg.AssetExecutionContext, error: str | None) -> Exception:
    """Resume later: in-run retry under the daemon, a clean failure for the command line."""
    if context.run.tags.get(ON_CEILING_TAG) == "stop":
        return dg.Failure(
            description=f"stopped at the rate budget's wait ceiling; progress is kept: {error}",
            allow_retries=False,
        )
    return dg.RetryRequested(max_retries=CEILING_RETRIES, seconds_to_wait=CEILING_RETRY_DELAY_S)


def _api(context: dg.AssetExecutionContext, scope: Scope) -> IozenApiResource:
    """The workspace's own API resource: its key, and no other workspace's."""
    api: IozenApiResource = getattr(context.resources, scope.api_resource)
    return api


def workspace_paths(context: dg.AssetExecutionContext, scope: Scope) -> DataPaths:
    """The workspace's own files, from the data directory resource."""
    data_dir: DataDirResource = context.resources.data_dir
    return scope.paths(data_dir.paths)


def _lake(paths: DataPaths) -> Lake:
    return Lake.open(paths.lake)


def build_assets(scope: Scope) -> WorkspaceAssets:
    """The assets of one workspace, named by ``scope``."""
    partitions_name = scope.name(BOT_PARTITIONS_NAME)
    resources = {scope.api_resource, "data_dir"}

    @dg.asset(
        key=scope.key("intake_bots"),
        group_name=scope.group("extract"),
        pool=scope.pool,
        kinds={"api", "parquet"},
        required_resource_keys=resources,
    )
    def intake_bots(context: dg.AssetExecutionContext) -> dg.MaterializeResult[Any]:
        """Every intake bot and its schema items; a bot's detail is fetched only when it changed.

        Registers each newly discovered bot as a partition of ``submissions``, and keeps the
        listing in the state file for this run's ``submissions`` step.
        """
        paths = workspace_paths(context, scope)
        # Registering new bots is inside the lock too: Dagster refuses a key another sync has
        # just added, failing the run.
        with sync_lock(paths.sync_lock, waiting=context.log.info):
            with _api(context, scope).client() as client, StateStore(paths.state_db) as state:
                report = sync_bots(client, _lake(paths), state)
                if report.stopped_by_wait_ceiling:
                    raise _stop_at_ceiling(context, report.wait_ceiling_error)
                state.save_listing(context.run.run_id, report.bots)
            keys = context.instance.get_dynamic_partitions(partitions_name)
            known = {bot_id_of(key) for key in keys}
            # A renamed bot keeps the key it was discovered under; its partitions' metadata
            # name it.
            new = [bot_partition_key(b.id, b.name) for b in report.bots if b.id not in known]
            if new:
                context.instance.add_dynamic_partitions(partitions_name, new)
        return dg.MaterializeResult(metadata=bots_metadata(report, new_partitions=len(new)))

    @dg.asset(
        key=scope.key("webhooks"),
        group_name=scope.group("extract"),
        pool=scope.pool,
        kinds={"api", "parquet"},
        required_resource_keys=resources,
    )
    def webhooks(context: dg.AssetExecutionContext) -> dg.MaterializeResult[Any]:
        """Registered webhook endpoints (never their secrets); skipped when the plan has none."""
        paths = workspace_paths(context, scope)
        with (
            sync_lock(paths.sync_lock, waiting=context.log.info),
            _api(context, scope).client() as client,
            StateStore(paths.state_db) as state,
        ):
            try:
                report = sync_webhooks(client, _lake(paths), state)
            except WaitCeilingReached as error:
                raise _stop_at_ceiling(context, str(error)) from error
        return dg.MaterializeResult(metadata=webhooks_metadata(report))

    # BackfillPolicy is beta in Dagster 1.13 and says so on every import of the definitions;
    # iozen-etl relies on it (one run per stretch of bots) with Dagster pinned, so the warning
    # tells a user nothing (docs/decisions.md, part 2).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.BetaWarning)
        per_bot_asset = dg.asset(
            key=scope.key("submissions"),
            group_name=scope.group("extract"),
            pool=scope.pool,
            partitions_def=dg.DynamicPartitionsDefinition(name=partitions_name),
            deps=[intake_bots],
            backfill_policy=dg.BackfillPolicy.single_run(),
            kinds={"api", "parquet"},
            required_resource_keys=resources,
            # Each bot whose data changed gets its own materialization (logged below); the step
            # yields no output, so a run over N bots writes events for the changed ones only.
            output_required=False,
            check_specs=[
                dg.AssetCheckSpec(
                    BOTS_SYNCED_CHECK,
                    asset=scope.key("submissions"),
                    description="Every bot of the last run synced; a failed one is named here.",
                )
            ],
        )

    @per_bot_asset
    def submissions(context: dg.AssetExecutionContext) -> Iterator[dg.AssetCheckResult]:
        """Submissions of the run's bots from each bot's stored resume point, ten pages to a file.

        Incremental runs skip unchanged bots; backfills and ``iozen/sync_mode=full`` rescan the
        chosen bots from the start without moving their live resume points backwards. Only the
        bots whose data changed are materialized (a backfill marks every bot it synced); a bot
        that failed gets an observation naming the error. The warehouse loads what changed in a
        run of its own.
        """
        keys = {bot_id_of(key): key for key in context.partition_keys}
        paths = workspace_paths(context, scope)
        report = _sync_run_bots(context, _api(context, scope), paths, list(keys))
        # Logged before any stop: a bot finished before the stop is unchanged when the step
        # resumes.
        _log_bot_events(context, report, keys)
        if report.stopped_by_wait_ceiling:
            raise _stop_at_ceiling(context, report.wait_ceiling_error)
        _warn_missing_bots(context, report, keys)
        yield bots_synced_check(report, BOTS_SYNCED_CHECK)
        _fail_if_bots_failed(report, scope)

    @dg.asset(
        key=scope.key("submission_events"),
        group_name=scope.group("extract"),
        pool=scope.pool,
        kinds={"api", "parquet"},
        required_resource_keys=resources,
    )
    def submission_events(context: dg.AssetExecutionContext) -> dg.MaterializeResult[Any]:
        """The submissions and bots named by the webhook events the receiver kept, fetched by id.

        Events are marked done once the files holding what they named are durable; the same run
        then loads the warehouse. An event whose submission no longer exists is done; one whose
        fetch failed waits for the next run.
        """
        paths = workspace_paths(context, scope)
        with EventStore(paths.webhook_events) as store:
            events = store.pending(EVENTS_PER_RUN)
            with _api(context, scope).client() as client:
                report = apply_events(client, _lake(paths), events)
            store.mark_done(report.done, now=time.time())
            pending = store.newest_pending()
        for line in report.errors:
            context.log.warning(line)
        return dg.MaterializeResult(
            metadata=events_metadata(report, pending_after=pending[0] if pending else 0)
        )

    # Loaded in a run of its own (the warehouse sensor, or ``iozen-etl sync`` after its sync
    # run): ``submissions`` yields no output, so a step after it in the same run would be
    # skipped.
    @dg.asset(
        key=scope.key("warehouse"),
        group_name=scope.group("warehouse"),
        pool=scope.pool,
        deps=[intake_bots, webhooks, submissions, submission_events],
        kinds={"duckdb"},
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=2), warn_window=timedelta(hours=1)
        ),
    )
    def warehouse(data_dir: DataDirResource) -> dg.MaterializeResult[Any]:
        """New Parquet files merged newest-wins into DuckDB, views applied, snapshot published."""
        # A workspace's paths name its lake, its state file and its schema of the data
        # directory's warehouse: the load brings that lake into that schema.
        paths = scope.paths(data_dir.paths)
        report = run_in_child(load_warehouse, paths)
        return dg.MaterializeResult(metadata=load_metadata(report, paths.warehouse_schema))

    return WorkspaceAssets(intake_bots, webhooks, submissions, submission_events, warehouse)


def _sync_run_bots(
    context: dg.AssetExecutionContext,
    iozen_api: IozenApiResource,
    paths: DataPaths,
    bot_ids: list[str],
) -> SubmissionsReport:
    """Sync the run's bots, from the listing this run's ``intake_bots`` step kept (none: list
    anew)."""
    lake = _lake(paths)
    with (
        sync_lock(paths.sync_lock, waiting=context.log.info),
        iozen_api.client() as client,
        StateStore(paths.state_db) as state,
    ):
        return sync_submissions(
            client,
            lake,
            state,
            state.listing(context.run.run_id),
            only_bots=set(bot_ids),
            full_refresh=_bots_to_rescan(context, state, lake, bot_ids),
            in_progress_refresh_limit=iozen_api.refresh_limit,
            progress=SyncProgress(len(bot_ids), context.log.info),
        )


def _bots_to_rescan(
    context: dg.AssetExecutionContext, state: StateStore, lake: Lake, bot_ids: list[str]
) -> set[str]:
    """Every bot in a full run, those off count in a reconcile, none in an incremental run."""
    mode = sync_mode(context.run.tags)
    if mode == FULL:
        return set(bot_ids)
    if mode == RECONCILE:
        off = set(bots_off_count(state, lake, bot_ids))
        context.log.info(f"reconcile: {len(off)} bots disagree with the API's count")
        return off
    return set()


def _log_bot_events(
    context: dg.AssetExecutionContext, report: SubmissionsReport, keys: dict[str, str]
) -> None:
    """An event per bot that has something to say, then the run's totals."""
    backfill = BACKFILL_TAG in context.run.tags
    for event in bot_events(report, context.asset_key, keys, mark_every_synced=backfill):
        context.log_event(event)
    context.log_event(
        dg.AssetObservation(asset_key=context.asset_key, metadata=run_observation(report))
    )


def _warn_missing_bots(
    context: dg.AssetExecutionContext, report: SubmissionsReport, keys: dict[str, str]
) -> None:
    """Name the run's bots the listing no longer has, by partition key: the slug of the name
    the bot was discovered under, and its id."""
    missing = [
        keys.get(bot.intake_bot_id, bot.intake_bot_id)
        for bot in report.bots
        if bot.action == "missing"
    ]
    if missing:
        # A deleted bot stays a partition (removing one could break a pending range): it must
        # not fail every later run over all bots.
        context.log.warning(
            f"{len(missing)} bot(s) of this run are no longer in the bot listing (deleted in "
            f"ioZen, or not visible to this key); their rows stay in the warehouse: "
            f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
        )


def _fail_if_bots_failed(report: SubmissionsReport, scope: Scope) -> None:
    failed = [bot for bot in report.bots if bot.action == "failed"]
    if failed:
        first = failed[0]
        where = f"{scope.label}: " if scope.prefixed else ""
        raise dg.Failure(
            description=f"{where}{len(failed)} of {len(report.bots)} bots failed; the others are "
            f"committed. First: {first.intake_bot_name} ({first.intake_bot_id}): {first.error}",
            metadata=run_metadata(report),
        )


# The workspace of the environment: what a single-workspace deployment defines.
ENVIRONMENT_ASSETS = build_assets(ENVIRONMENT)
intake_bots, webhooks, submissions, submission_events, warehouse = ENVIRONMENT_ASSETS
