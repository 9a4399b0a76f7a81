"""Engine reports turned into Dagster metadata: counts, never values. Each key is written here
only."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import dagster as dg

from iozen_etl.replay import ReplayReport
from iozen_etl.sync.events import EventsReport
from iozen_etl.sync.reports import (
    BotsReport,
    BotSubmissionsReport,
    SubmissionsReport,
    WebhooksReport,
)
from iozen_etl.warehouse import LoadReport, TableCounts

ROW_COUNT = "dagster/row_count"
# Every extract's count of lake files it wrote: the warehouse has work only when one is above 0.
LAKE_FILES = "lake_files_written"
RUN_PREFIX = "run/"


def bots_metadata(report: BotsReport, *, new_partitions: int) -> dict[str, Any]:
    return {
        "bots_seen": len(report.bots),
        LAKE_FILES: report.files_written,
        "bots_new": report.bots_new,
        "bots_changed": report.bots_changed,
        "details_fetched": report.details_fetched,
        "detail_errors": len(report.detail_errors),
        ROW_COUNT: report.rows_written,
        "requests": report.requests,
        "throttled_429": report.throttled,
        "seconds_waited": round(report.seconds_waited, 3),
        "stopped_by_wait_ceiling": str(report.stopped_by_wait_ceiling),
        "elapsed_s": round(report.elapsed_s, 3),
        "partitions_added": new_partitions,
    }


def webhooks_metadata(report: WebhooksReport) -> dict[str, Any]:
    return {
        "webhooks": report.webhooks,
        ROW_COUNT: report.webhooks,
        LAKE_FILES: report.files_written,
        "skipped": report.skipped or "",
        "requests": report.requests,
        "elapsed_s": round(report.elapsed_s, 3),
    }


def events_metadata(report: EventsReport, *, pending_after: int) -> dict[str, Any]:
    return {
        "events": report.events,
        "events_done": len(report.done),
        "events_pending_after": pending_after,
        "submissions_fetched": report.submissions_fetched,
        "submissions_gone": report.submissions_gone,
        "bots_refreshed": report.bots_refreshed,
        "events_ignored": report.events_ignored,
        LAKE_FILES: report.files_written,
        "requests": report.requests,
        "errors": "\n".join(report.errors[:20]),
        "elapsed_s": round(report.seconds, 3),
    }


def run_totals(report: SubmissionsReport) -> dict[str, Any]:
    """Every total of a ``submissions`` step, unprefixed."""
    bots = report.bots
    return {
        "bots_seen": len(bots),
        "bots_skipped": report.count("skipped"),
        "bots_synced": report.count("synced"),
        "bots_changed": sum(1 for bot in bots if bot.changed),
        "bots_failed": report.count("failed"),
        "bots_stopped": report.count("stopped"),
        "bots_missing": report.count("missing"),
        "bots_rescanned": sum(1 for bot in bots if bot.rescan),
        "pages": report.total("pages"),
        "requests": report.requests,
        "retries": report.retries,
        "throttled_429": report.throttled,
        "seconds_waited": round(report.seconds_waited, 3),
        "rows_new": report.total("rows_new"),
        "rows_rescanned": report.total("rows_rescanned"),
        "rows_updated": report.total("refresh_updated"),
        LAKE_FILES: report.total("files_written"),
        "in_progress_refreshed": report.total("refreshed"),
        "in_progress_completed": report.total("refresh_completed"),
        "in_progress_unchecked": report.total("in_progress_unchecked"),
        "rows_reread": report.total("rows_reread"),
        "resume_points_moved": report.resume_points_moved,
        "schema_drift_bots": sum(
            1 for bot in bots if bot.unknown_answer_fields or bot.type_mismatch_fields
        ),
        ROW_COUNT: report.total("rows_written"),
        "stopped_by_wait_ceiling": str(report.stopped_by_wait_ceiling),
        "elapsed_s": round(report.elapsed_s, 3),
    }


# The run's headline totals, on the step's failure when bots failed (the full set goes on the
# run's observation, see ``run_observation``).
HEADLINE_KEYS = (
    "bots_synced",
    "bots_changed",
    "bots_skipped",
    "rows_new",
    "rows_updated",
    "requests",
)


def run_metadata(report: SubmissionsReport) -> dict[str, Any]:
    """The run's headline totals, prefixed: they are the run's, not a partition's own."""
    totals = run_totals(report)
    return {RUN_PREFIX + key: totals[key] for key in HEADLINE_KEYS}


def lake_files_written(facts: Mapping[str, object]) -> int:
    """Lake files an extract event reports: its own count (bots, webhooks) or its run's
    (the observation closing a ``submissions`` step)."""
    for name in (LAKE_FILES, RUN_PREFIX + LAKE_FILES):
        written = facts.get(name)
        if isinstance(written, int):
            return written
    return 0


def run_observation(report: SubmissionsReport) -> dict[str, Any]:
    """Every total of the run and a table of the bots it touched, recorded once per run."""
    facts = {RUN_PREFIX + key: value for key, value in run_totals(report).items()}
    return {**facts, **bots_table(report)}


def bot_events(
    report: SubmissionsReport,
    asset_key: dg.AssetKey,
    keys: Mapping[str, str],
    *,
    mark_every_synced: bool,
) -> list[dg.AssetMaterialization | dg.AssetObservation]:
    """One event per bot partition that has something to say, each with that bot's own facts.

    A materialization for each bot whose data changed (every synced bot when
    ``mark_every_synced``: a backfill marks what it was asked for), and an observation naming
    the error for each bot that failed; unchanged bots get nothing and keep their last
    materialization. Dagster writes each event on its own, so a run costs what changed.
    """
    events: list[dg.AssetMaterialization | dg.AssetObservation] = []
    for bot in report.bots:
        if bot.changed or (mark_every_synced and bot.action == "synced"):
            events.append(
                dg.AssetMaterialization(
                    asset_key=asset_key,
                    partition=keys[bot.intake_bot_id],
                    description=f"{bot.intake_bot_name or bot.intake_bot_id}: synced",
                    metadata=bot_metadata(bot),
                )
            )
        elif bot.action == "failed":
            events.append(
                dg.AssetObservation(
                    asset_key=asset_key,
                    partition=keys[bot.intake_bot_id],
                    description=f"{bot.intake_bot_name or bot.intake_bot_id}: sync failed",
                    metadata={**bot_metadata(bot), "error": dg.MetadataValue.text(bot.error or "")},
                )
            )
    return events


def bots_synced_check(report: SubmissionsReport, name: str) -> dg.AssetCheckResult:
    """The run's verdict on its bots, where the asset shows it: failed bots by name and error."""
    failed = [bot for bot in report.bots if bot.action == "failed"]
    lines = [
        f"- **{bot.intake_bot_name or bot.intake_bot_id}** (`{bot.intake_bot_id}`): {bot.error}"
        for bot in failed
    ]
    return dg.AssetCheckResult(
        check_name=name,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(failed)} of {len(report.bots)} bots failed: "
            + ", ".join(bot.intake_bot_name or bot.intake_bot_id for bot in failed[:3])
            + (" ..." if len(failed) > 3 else "")
            if failed
            else "every bot synced"
        ),
        metadata={
            "bots_failed": dg.MetadataValue.int(len(failed)),
            "bots_in_run": dg.MetadataValue.int(len(report.bots)),
            "failed": dg.MetadataValue.md("\n".join(lines) or "none"),
        },
    )


def bot_metadata(bot: BotSubmissionsReport) -> dict[str, Any]:
    """What one run did for one bot: counts, its resume point and name, never answer values."""
    facts: dict[str, Any] = {
        "bot": dg.MetadataValue.text(bot.intake_bot_name),
        "status": dg.MetadataValue.text(bot.action),
        "rows_new": dg.MetadataValue.int(bot.rows_new),
        "rows_rescanned": dg.MetadataValue.int(bot.rows_rescanned),
        "rows_updated": dg.MetadataValue.int(bot.refresh_updated),
        "pages": dg.MetadataValue.int(bot.pages),
        "requests": dg.MetadataValue.int(bot.requests),
        "in_progress_refreshed": dg.MetadataValue.int(bot.refreshed),
        "resume_point": dg.MetadataValue.text(bot.resume_point_after or "(start)"),
    }
    if bot.last_submission_at:
        facts["last_submission_at"] = _timestamp(bot.last_submission_at)
    if bot.rescan:
        facts["rescan"] = dg.MetadataValue.text(bot.rescan)
    if bot.unknown_answer_fields:
        facts["unknown_answer_fields"] = dg.MetadataValue.text(", ".join(bot.unknown_answer_fields))
    return facts


def _timestamp(iso: str) -> dg.MetadataValue[Any]:
    """A time the UI shows as one (as text when the API sent something else)."""
    try:
        return dg.MetadataValue.timestamp(datetime.fromisoformat(iso))
    except ValueError:
        return dg.MetadataValue.text(iso)


# (name, type, description) of the run's table of bots; short names, so columns do not wrap.
BOT_COLUMNS = [
    ("bot", "string", "the bot's name"),
    ("bot_id", "string", "the bot's id (its partition key)"),
    ("status", "string", "synced, failed, stopped or missing"),
    ("pages", "int", "pages read"),
    ("new", "int", "rows read past the resume point"),
    ("rescanned", "int", "rows read again by a rescan"),
    ("updated", "int", "IN_PROGRESS rows stored again"),
    ("rescan", "string", "why a rescan ran"),
    ("resume_from", "string", "resume point before the run"),
    ("resume_to", "string", "resume point after the run"),
    ("error", "string", "why the bot failed (ids and request ids only)"),
]


def bots_table(report: SubmissionsReport) -> dict[str, Any]:
    """The bots this run did something for, as one table (skipped bots are only counted)."""
    rows = [bot for bot in report.bots if bot.action != "skipped"]
    return {
        RUN_PREFIX + "bots": dg.TableMetadataValue(
            records=[dg.TableRecord(_bot_row(bot)) for bot in rows],
            schema=dg.TableSchema(
                columns=[dg.TableColumn(n, t, description=d) for n, t, d in BOT_COLUMNS]
            ),
        )
    }


def _bot_row(bot: BotSubmissionsReport) -> dict[str, str | int]:
    return {
        "bot": bot.intake_bot_name,
        "bot_id": bot.intake_bot_id,
        "status": bot.action,
        "pages": bot.pages,
        "new": bot.rows_new,
        "rescanned": bot.rows_rescanned,
        "updated": bot.refresh_updated,
        "rescan": bot.rescan or "",
        "resume_from": bot.resume_point_before or "",
        "resume_to": bot.resume_point_after or "",
        "error": bot.error or "",
    }


# (name, type, description) of the load's table of tables.
LOAD_COLUMNS = [
    ("table", "string", "warehouse table"),
    ("rows", "int", "rows it holds after the load"),
    ("inserted", "int", "rows new in this load"),
    ("updated", "int", "rows replaced by a newer version"),
    ("deleted", "int", "rows dropped because their submission or bot schema moved on"),
    ("files", "int", "lake files loaded into it"),
]


def load_metadata(report: LoadReport, schema_name: str = "main") -> dict[str, Any]:
    """What a load did, typed for the UI: counts as ints, a table per table, times in seconds,
    and the submissions table's columns with what each holds; a workspace's schema, and how
    analysts name its tables."""
    schema = report.column_schemas.get("submissions", {})
    comments = report.column_comments.get("submissions", {})
    rows: list[dict[str, str | int]] = [
        {
            "table": table,
            "rows": count,
            "inserted": changes.inserted,
            "updated": changes.updated,
            "deleted": changes.deleted,
            "files": report.files_loaded.get(table, 0),
        }
        for table, count in sorted(report.row_counts.items())
        for changes in [report.tables.get(table, TableCounts())]
    ]
    facts: dict[str, Any] = {
        ROW_COUNT: dg.MetadataValue.int(report.row_counts.get("submissions", 0)),
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(name, kind, description=comments.get(name))
                for name, kind in schema.items()
            ]
        ),
        "load_id": dg.MetadataValue.int(report.load_id),
        "mode": dg.MetadataValue.text(report.mode),
        "files_loaded": dg.MetadataValue.int(sum(report.files_loaded.values())),
        "files_rejected": dg.MetadataValue.int(len(report.rejected)),
        "tables": dg.MetadataValue.table(
            records=[dg.TableRecord(row) for row in rows],
            schema=dg.TableSchema(
                columns=[dg.TableColumn(n, t, description=d) for n, t, d in LOAD_COLUMNS]
            ),
        ),
        "wide_views_created": dg.MetadataValue.int(report.wide_views.created),
        "wide_views_dropped": dg.MetadataValue.int(report.wide_views.dropped),
        "published": dg.MetadataValue.bool(report.published),
        "publish_method": dg.MetadataValue.text(report.publish_method or "-"),
        "publish_bytes_written": dg.MetadataValue.int(report.publish_bytes_written),
    }
    for phase, seconds in report.seconds.items():
        facts[f"seconds_{phase}"] = dg.MetadataValue.float(round(seconds, 3))
    if report.publish_skipped_reason:
        facts["publish_skipped_reason"] = dg.MetadataValue.text(report.publish_skipped_reason)
    if schema_name != "main":
        facts["schema"] = dg.MetadataValue.text(schema_name)
        facts["query_as"] = dg.MetadataValue.text(f"select * from {schema_name}.submissions")
    if report.rejected:
        facts["rejected"] = dg.MetadataValue.md(
            "\n".join(f"- `{r.path}`: {r.reason}" for r in report.rejected)
        )
    return facts


def replay_metadata(report: ReplayReport) -> dict[str, Any]:
    """What a replay of one file did: counts and reasons, never cell values."""
    facts: dict[str, Any] = {
        "file": report.file,
        "rows": report.rows,
        "created": report.created,
        "already_created": report.already_created,
        "rejected": report.rejected,
        "conflicts": report.conflicts,
        "pending": report.pending,
        "held": report.held,
        "posts_sent": report.posts_sent,
        "seconds": round(report.seconds, 3),
    }
    if report.dry_run:
        facts["would_send"] = report.would_send
    if report.stopped_reason:
        facts["stopped_reason"] = report.stopped_reason
    if report.rejects_path:
        facts["rejects_path"] = report.rejects_path
    facts[ROW_COUNT] = report.created + report.already_created
    return facts
