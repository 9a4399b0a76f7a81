"""Run the sync job in-process, the way the schedule and the sensors would, for the command line,
and summarise what its runs reported."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from iozen_etl.pipeline.partitions import (
    BOT_PARTITIONS_NAME,
    FULL,
    INCREMENTAL,
    ON_CEILING_TAG,
    bot_id_of,
    contiguous_ranges,
    range_tags,
    usable_bot_keys,
)
from iozen_etl.pipeline.reporting import RUN_PREFIX, lake_files_written
from iozen_etl.pipeline.scope import ENVIRONMENT, Scope
from iozen_etl.resources import DataDirResource
from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import files_owed


@dataclass
class SyncOutcome:
    """What the command line prints: the runs made and the facts their assets reported."""

    success: bool
    runs: int = 0
    reason: str | None = None
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # asset -> metadata
    lake_files_written: int = 0  # by every run of the command: the warehouse loads when > 0


def open_instance() -> dg.DagsterInstance:
    """The instance under ``DAGSTER_HOME`` when set (runs show in the UI), else a throwaway one.

    Resume points live in the state file, not in Dagster, so either way the sync resumes.
    """
    # As the Makefile does: one "planned" event for a run over N bots instead of N separate
    # writes, and event batches where the storage can write them together.
    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def run_sync(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    bots: Sequence[str] = (),
    full_refresh: bool = False,
    say: Callable[[str], None] = print,
    scope: Scope = ENVIRONMENT,
) -> SyncOutcome:
    """Discover the workspace's bots, sync the chosen ones (all by default), then load the
    warehouse when the runs wrote new Parquet files, or an earlier load left files out, or
    there is no warehouse yet."""
    outcome = _sync(defs, instance, bots=bots, full_refresh=full_refresh, say=say, scope=scope)
    if outcome.runs == 0:
        return outcome
    data_dir = (defs.resources or {}).get("data_dir")
    top = data_dir.paths if isinstance(data_dir, DataDirResource) else DataPaths.from_env()
    paths = scope.paths(top)
    if outcome.lake_files_written or not paths.published_db.exists():
        say("loading the warehouse")
    elif owed := files_owed(paths):
        say(f"loading the warehouse ({owed} lake files an earlier load did not publish)")
    else:
        say("warehouse unchanged: the sync wrote no new files")
        return outcome
    _execute(defs.resolve_job_def(scope.name("load_job")), instance, outcome)
    return outcome


def _sync(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    bots: Sequence[str],
    full_refresh: bool,
    say: Callable[[str], None],
    scope: Scope,
) -> SyncOutcome:
    job = defs.resolve_job_def(scope.name("sync_job"))
    mode = FULL if full_refresh else INCREMENTAL
    outcome = SyncOutcome(success=True)
    partitions = scope.name(BOT_PARTITIONS_NAME)
    known = usable_bot_keys(instance.get_dynamic_partitions(partitions))

    if known and not bots:
        say(f"syncing {len(known)} bots ({mode})")
        completed = _execute(job, instance, outcome, tags=range_tags(known[0], known[-1], mode))
    else:
        say("listing intake bots")
        selection = [scope.key("intake_bots"), scope.key("webhooks")]
        completed = _execute(job, instance, outcome, selection=selection)
    if not completed:
        return outcome

    after = usable_bot_keys(instance.get_dynamic_partitions(partitions))
    if bots:
        by_id = {bot_id_of(key): key for key in after}
        unknown = sorted(set(bots) - set(by_id))
        if unknown:
            outcome.success = False
            outcome.reason = f"unknown bot id(s): {', '.join(unknown)}"
            return outcome
        targets = [by_id[bot] for bot in bots]
    else:
        # Bots discovered by this run's listing were not in its partition range.
        seen = set(known)
        targets = [key for key in after if key not in seen]
    for start, end in contiguous_ranges(after, targets):
        say(f"syncing bots {start}..{end} ({mode})")
        tags = range_tags(start, end, mode)
        if not _execute(job, instance, outcome, tags=tags, selection=[scope.key("submissions")]):
            break
    return outcome


def _execute(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    outcome: SyncOutcome,
    *,
    tags: dict[str, str] | None = None,
    selection: Sequence[dg.AssetKey] | None = None,
) -> bool:
    """Run once, adding the run's facts to ``outcome``; False when the run failed."""
    run_tags = {**(tags or {}), ON_CEILING_TAG: "stop"}
    result = job.execute_in_process(
        instance=instance,
        tags=run_tags,
        asset_selection=list(selection) if selection else None,
        raise_on_error=False,
        # The command prints its own progress and summary; Dagster's event stream stays in the
        # instance (and the UI) instead of flooding the terminal.
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    outcome.runs += 1
    for event in result.all_events:
        record: dg.AssetMaterialization | dg.AssetObservation
        if event.is_step_materialization:
            record = event.step_materialization_data.materialization
        elif event.event_type_value == "ASSET_OBSERVATION":
            record = event.asset_observation_data.asset_observation
        else:
            continue
        if record.partition is not None:
            continue  # a bot's own event; the run's facts come unpartitioned
        # By the asset's own name: a workspace's prefix is the command's to print.
        name = record.asset_key.path[-1]
        facts = {k: v.value for k, v in record.metadata.items()}
        outcome.metadata.setdefault(name, {}).update(facts)
        outcome.lake_files_written += lake_files_written(facts)
    if not result.success:
        # The first failure is the one to tell: a load after a failed sync fails on its own.
        if outcome.success:
            outcome.reason = _failure_reason(result)
        outcome.success = False
    return result.success


def _failure_reason(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            # Dagster wraps the asset's own exception; its message is the useful one. Its own
            # causes are not: an error that names the file it could not write has the bare
            # OSError or SQLite error as its cause, and an error from the warehouse child has
            # that child's traceback.
            while (
                error is not None and (error.cls_name or "").startswith("Dagster") and error.cause
            ):
                error = error.cause
            message = error.message.strip().splitlines()[0] if error else "step failed"
            return f"{event.step_key}: {message}"
    return "the run failed"


SUMMARY_LINES = [
    ("intake_bots", "bots_seen", "bots listed"),
    ("intake_bots", "details_fetched", "bot details fetched"),
    ("submissions", RUN_PREFIX + "bots_synced", "bots synced"),
    ("submissions", RUN_PREFIX + "bots_changed", "bots changed (materialized)"),
    ("submissions", RUN_PREFIX + "bots_skipped", "bots unchanged (no request)"),
    ("submissions", RUN_PREFIX + "bots_missing", "bots no longer listed"),
    ("submissions", RUN_PREFIX + "pages", "pages read"),
    ("submissions", RUN_PREFIX + "rows_new", "submissions new"),
    ("submissions", RUN_PREFIX + "rows_rescanned", "submissions rescanned"),
    ("submissions", RUN_PREFIX + "rows_updated", "submissions updated"),
    ("submissions", RUN_PREFIX + "in_progress_refreshed", "IN_PROGRESS read again"),
    ("submissions", RUN_PREFIX + "in_progress_unchecked", "IN_PROGRESS left for later"),
    ("submissions", RUN_PREFIX + "requests", "API requests"),
    ("submissions", RUN_PREFIX + "throttled_429", "429 answers"),
    ("submissions", RUN_PREFIX + "seconds_waited", "seconds waited"),
    ("webhooks", "webhooks", "webhooks"),
]


def format_summary(metadata: dict[str, dict[str, Any]]) -> str:
    """A short report of a sync for the terminal, from the runs' materialization metadata."""
    lines = []
    for asset, key, label in SUMMARY_LINES:
        value = metadata.get(asset, {}).get(key)
        if value is not None:
            lines.append(f"  {label:<30} {value}")
    tables = metadata.get("warehouse", {}).get("tables")
    if isinstance(tables, dg.TableMetadataValue):
        lines.append("  warehouse tables:")
        lines.extend(
            f"    {record.data['table']!s:<28} {record.data['rows']}" for record in tables.records
        )
    return "\n".join(["sync summary:", *lines]) if lines else "sync summary: nothing ran"
