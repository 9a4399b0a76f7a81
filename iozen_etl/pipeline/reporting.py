"""Engine reports turned into Dagster metadata and a command-line summary: counts, never values."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import dagster as dg

from iozen_etl.replay import ReplayReport
from iozen_etl.sync.extract import BotsReport, BotSubmissionsReport, SubmissionsReport
from iozen_etl.warehouse import LoadReport

RUN_PREFIX = "run/"


def bots_metadata(report: BotsReport, *, new_partitions: int) -> dict[str, Any]:
    return {**report.metadata(), "partitions_added": new_partitions}


# The totals repeated on every bot partition's materialization. Dagster stores each event's
# metadata separately, so at a thousand bots every key here costs seconds; the full set goes once
# on the run's observation (see ``run_observation``).
PARTITION_KEYS = ("bots_synced", "bots_skipped", "rows_new", "rows_updated", "requests")


def run_metadata(report: SubmissionsReport) -> dict[str, Any]:
    """The run's headline totals, prefixed: they are the run's, not the partition's own."""
    facts = report.metadata()
    return {RUN_PREFIX + key: facts[key] for key in PARTITION_KEYS}


def run_observation(report: SubmissionsReport) -> dict[str, Any]:
    """Every total of the run and a table of the bots it touched, recorded once."""
    facts = {RUN_PREFIX + key: value for key, value in report.metadata().items()}
    return {**facts, **bots_table(report)}


BOT_COLUMNS = [
    ("intake_bot_id", "string"),
    ("action", "string"),
    ("pages", "int"),
    ("rows_new", "int"),
    ("rows_rescanned", "int"),
    ("refresh_updated", "int"),
    ("rescan", "string"),
    ("resume_point_before", "string"),
    ("resume_point_after", "string"),
    ("unknown_answer_fields", "string"),
    ("error", "string"),
]


def bots_table(report: SubmissionsReport) -> dict[str, Any]:
    """The bots this run did something for, as one table (skipped bots are only counted).

    One table on the run's event rather than metadata per partition: Dagster validates each
    per-partition call against the whole range, which costs seconds at a thousand bots.
    """
    rows = [bot for bot in report.bots if bot.action != "skipped"]
    return {
        RUN_PREFIX + "bots": dg.TableMetadataValue(
            records=[dg.TableRecord(_bot_row(bot)) for bot in rows],
            schema=dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in BOT_COLUMNS]),
        )
    }


def _bot_row(bot: BotSubmissionsReport) -> dict[str, str | int]:
    facts = asdict(bot)
    facts["unknown_answer_fields"] = ", ".join(bot.unknown_answer_fields)
    return {name: ("" if facts[name] is None else facts[name]) for name, _ in BOT_COLUMNS}


def load_metadata(report: LoadReport) -> dict[str, Any]:
    facts = report.metadata()
    schema = report.column_schemas.get("submissions", {})
    return {
        **facts,
        "dagster/row_count": report.row_counts.get("submissions", 0),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, kind) for name, kind in schema.items()]
        ),
    }


def replay_metadata(report: ReplayReport) -> dict[str, Any]:
    return {**report.metadata(), "dagster/row_count": report.created + report.already_created}


SUMMARY_LINES = [
    ("intake_bots", "bots_seen", "bots listed"),
    ("intake_bots", "details_fetched", "bot details fetched"),
    ("submissions", RUN_PREFIX + "bots_synced", "bots synced"),
    ("submissions", RUN_PREFIX + "bots_skipped", "bots unchanged (no request)"),
    ("submissions", RUN_PREFIX + "bots_missing", "bots no longer listed"),
    ("submissions", RUN_PREFIX + "pages", "pages read"),
    ("submissions", RUN_PREFIX + "rows_new", "submissions new"),
    ("submissions", RUN_PREFIX + "rows_rescanned", "submissions rescanned"),
    ("submissions", RUN_PREFIX + "rows_updated", "submissions updated"),
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
    counts = metadata.get("warehouse", {}).get("row_counts")
    if isinstance(counts, dict):
        lines.append("  warehouse tables:")
        lines.extend(f"    {table:<28} {rows}" for table, rows in sorted(counts.items()))
    return "\n".join(["sync summary:", *lines]) if lines else "sync summary: nothing ran"
