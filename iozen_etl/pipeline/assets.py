"""The read path as Dagster assets: bots -> submissions per bot -> warehouse.

Assets are thin: they pick the bots and the mode from the run, call the sync engine or the
warehouse load, and report facts as metadata. Counts only: answer values never reach metadata.
"""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations at definition time and needs real types, not strings.
import warnings
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dagster as dg

from iozen_etl.api import WaitCeilingReached
from iozen_etl.pipeline.listing import load_listing, save_listing
from iozen_etl.pipeline.partitions import (
    BACKFILL_TAG,
    BOT_PARTITIONS,
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
    load_metadata,
    run_metadata,
    run_observation,
)
from iozen_etl.pipeline.warehouse_process import run_in_child
from iozen_etl.resources import DataDirResource, IozenApiResource
from iozen_etl.settings import in_progress_refresh_limit_from_env
from iozen_etl.sync.bots import sync_bots
from iozen_etl.sync.lake import Lake
from iozen_etl.sync.state import StateStore
from iozen_etl.sync.submissions import sync_submissions
from iozen_etl.sync.webhooks import sync_webhooks
from iozen_etl.warehouse import load_warehouse

POOL = "iozen"
BOTS_SYNCED_CHECK = "bots_synced"
# Seconds Dagster waits before retrying a step that stopped at the rate budget's wait ceiling:
# a whole rate window, so the budget is full again when the step resumes.
CEILING_RETRY_DELAY_S = 60
CEILING_RETRIES = 3
# IN_PROGRESS submissions re-read per run (one GET each, oldest-checked first): at a 15-minute
# schedule the default costs at most 400 requests an hour, a small share of either plan's budget.


def _stop_at_ceiling(context: dg.AssetExecutionContext, error: str | None) -> Exception:
    """Resume later: in-run retry under the daemon, a clean failure for the command line."""
    if context.run.tags.get(ON_CEILING_TAG) == "stop":
        return dg.Failure(
            description=f"stopped at the rate budget's wait ceiling; progress is kept: {error}",
            allow_retries=False,
        )
    return dg.RetryRequested(max_retries=CEILING_RETRIES, seconds_to_wait=CEILING_RETRY_DELAY_S)


@dg.asset(group_name="extract", pool=POOL, kinds={"api", "parquet"})
def intake_bots(
    context: dg.AssetExecutionContext, iozen_api: IozenApiResource, data_dir: DataDirResource
) -> dg.MaterializeResult[Any]:
    """Every intake bot and its schema items; a bot's detail is fetched only when it changed.

    Registers each newly discovered bot as a partition of ``submissions``.
    """
    paths = data_dir.paths
    with iozen_api.client() as client, StateStore(paths.state_db) as state:
        report = sync_bots(client, Lake(paths.parquet), state)
    if report.stopped_by_wait_ceiling:
        raise _stop_at_ceiling(context, "while listing bots")
    save_listing(paths, context.run.run_id, report.bots)
    keys = context.instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
    known = {bot_id_of(key) for key in keys}
    # A renamed bot keeps the key it was discovered under; its partitions' metadata name it.
    new = [bot_partition_key(bot.id, bot.name) for bot in report.bots if bot.id not in known]
    if new:
        context.instance.add_dynamic_partitions(BOT_PARTITIONS_NAME, new)
    return dg.MaterializeResult(metadata=bots_metadata(report, new_partitions=len(new)))


@dg.asset(group_name="extract", pool=POOL, kinds={"api", "parquet"})
def webhooks(
    context: dg.AssetExecutionContext, iozen_api: IozenApiResource, data_dir: DataDirResource
) -> dg.MaterializeResult[Any]:
    """Registered webhook endpoints (never their secrets); skipped when the plan has none."""
    paths = data_dir.paths
    with iozen_api.client() as client, StateStore(paths.state_db) as state:
        try:
            report = sync_webhooks(client, Lake(paths.parquet), state)
        except WaitCeilingReached as error:
            raise _stop_at_ceiling(context, str(error)) from error
    return dg.MaterializeResult(metadata=report.metadata())


# BackfillPolicy is beta in Dagster 1.13 and says so on every import of the definitions;
# iozen-etl relies on it (one run per stretch of bots) with Dagster pinned, so the warning
# tells a user nothing (docs/decisions.md, part 2).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=dg.BetaWarning)
    _per_bot_asset = dg.asset(
        group_name="extract",
        pool=POOL,
        partitions_def=BOT_PARTITIONS,
        deps=[intake_bots],
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"api", "parquet"},
        # Each bot whose data changed gets its own materialization (logged below); the step yields
        # no output, so a run over N bots writes events for the changed ones only.
        output_required=False,
        check_specs=[
            dg.AssetCheckSpec(
                BOTS_SYNCED_CHECK,
                asset="submissions",
                description="Every bot of the last run synced; a failed one is named here.",
            )
        ],
    )


@_per_bot_asset
def submissions(
    context: dg.AssetExecutionContext, iozen_api: IozenApiResource, data_dir: DataDirResource
) -> Iterator[dg.AssetCheckResult]:
    """Submissions of the run's bots from each bot's stored resume point, ten pages to a file.

    Incremental runs skip unchanged bots; backfills and ``iozen/sync_mode=full`` rescan the chosen
    bots from the start without moving their live resume points backwards. Only the bots whose
    data changed are materialized (a backfill marks every bot it synced); a bot that failed gets
    an observation naming the error. The warehouse loads what changed in a run of its own.
    """
    paths = data_dir.paths
    mode = sync_mode(context.run.tags)
    keys = {bot_id_of(key): key for key in context.partition_keys}
    bot_ids = list(keys)
    full_refresh = set(bot_ids) if mode == FULL else set()
    if mode == RECONCILE:
        full_refresh = set(bots_off_count(paths, bot_ids))
        context.log.info(f"reconcile: {len(full_refresh)} bots disagree with the API's count")
    with iozen_api.client() as client, StateStore(paths.state_db) as state:
        report = sync_submissions(
            client,
            Lake(paths.parquet),
            state,
            load_listing(paths, context.run.run_id),  # None: no listing in this run, list anew
            only_bots=set(bot_ids),
            full_refresh=full_refresh,
            in_progress_refresh_limit=in_progress_refresh_limit_from_env(),
            progress=SyncProgress(len(bot_ids), context.log.info),
        )
    # Logged before any stop: a bot finished before the stop is unchanged when the step resumes.
    backfill = BACKFILL_TAG in context.run.tags
    for event in bot_events(report, context.asset_key, keys, mark_every_synced=backfill):
        context.log_event(event)
    context.log_event(
        dg.AssetObservation(asset_key=context.asset_key, metadata=run_observation(report))
    )
    if report.stopped_by_wait_ceiling:
        raise _stop_at_ceiling(context, report.wait_ceiling_error)
    # Named by partition key: the slug of the name the bot was discovered under, and its id.
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
    failed = [bot for bot in report.bots if bot.action == "failed"]
    yield bots_synced_check(report, BOTS_SYNCED_CHECK)
    if failed:
        first = failed[0]
        raise dg.Failure(
            description=f"{len(failed)} of {len(report.bots)} bots failed; the others are "
            f"committed. First: {first.intake_bot_name} ({first.intake_bot_id}): {first.error}",
            metadata=run_metadata(report),
        )


# Loaded in a run of its own (the warehouse sensor, or ``iozen-etl sync`` after its sync run):
# ``submissions`` yields no output, so a step after it in the same run would be skipped.
@dg.asset(
    group_name="warehouse",
    pool=POOL,
    deps=[intake_bots, webhooks, submissions],
    kinds={"duckdb"},
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=2), warn_window=timedelta(hours=1)
    ),
)
def warehouse(data_dir: DataDirResource) -> dg.MaterializeResult[Any]:
    """New Parquet files merged newest-wins into DuckDB, views applied, snapshot published."""
    report = run_in_child(load_warehouse, data_dir.paths)
    return dg.MaterializeResult(metadata=load_metadata(report))
