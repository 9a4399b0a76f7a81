"""Data-quality checks on the warehouse, as plain functions (the Dagster asset checks call them).

Each returns a :class:`CheckResult` with ``passed``, a ``severity`` ("ERROR" or "WARN") and
metadata made of counts, ids, field names and types only: never an answer value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

import duckdb

from iozen_etl.settings import DataPaths
from iozen_etl.warehouse.merge import scalar
from iozen_etl.warehouse.sql_files import quoted

ERROR = "ERROR"
WARN = "WARN"
SAMPLE = 20  # how many offending ids a check names in its metadata
# Fields named in a check's metadata: bot id, field name and what is found about the field.
Fields: TypeAlias = list[dict[str, object]]

UNIQUE_KEYS: Mapping[str, tuple[str, ...]] = {
    "intake_bots": ("id",),
    "submissions": ("id",),
    "webhooks": ("id",),
    "intake_bot_fields": ("intake_bot_id", "position"),
    "submission_answers": ("submission_id", "field_name", "position"),
}


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    severity: str
    metadata: Mapping[str, object]


def check_unique_ids(con: duckdb.DuckDBPyConnection) -> CheckResult:
    """Every table holds each key once."""
    duplicates: dict[str, int] = {}
    samples: dict[str, list[str]] = {}
    for table, key in UNIQUE_KEYS.items():
        key_list = ", ".join(key)
        rows = con.execute(
            f"select {key_list}, count(*) from {table} group by all having count(*) > 1"
            f" order by {key_list}"
        ).fetchall()
        duplicates[table] = len(rows)
        if rows:
            samples[table] = [" / ".join(str(part) for part in row[:-1]) for row in rows[:SAMPLE]]
    return CheckResult(
        name="ids_unique",
        passed=not any(duplicates.values()),
        severity=ERROR,
        metadata={"duplicate_keys": duplicates, "examples": samples},
    )


def check_submissions_have_bots(con: duckdb.DuckDBPyConnection) -> CheckResult:
    """No submission refers to a bot the warehouse does not hold."""
    rows = con.execute(
        "select s.intake_bot_id, count(*) from submissions as s"
        " where not exists (select 1 from intake_bots as b where b.id = s.intake_bot_id)"
        " group by all order by 1"
    ).fetchall()
    orphans = sum(int(count) for _, count in rows)
    return CheckResult(
        name="submissions_have_bots",
        passed=orphans == 0,
        severity=ERROR,
        metadata={
            "orphan_submissions": orphans,
            "missing_bots": [str(bot_id) for bot_id, _ in rows[:SAMPLE]],
        },
    )


def check_count_parity(con: duckdb.DuckDBPyConnection, severity: str = WARN) -> CheckResult:
    """Each bot holds as many submissions as the API's ``submission_count`` says."""
    rows = con.execute(
        "select intake_bot_id, name, api_submission_count, submissions"
        " from v_bot_summary where count_matches_api is not true order by intake_bot_id"
    ).fetchall()
    bots = scalar(con, "select count(*) from intake_bots")
    return CheckResult(
        name="submission_count_parity",
        passed=not rows,
        severity=severity,
        metadata={
            "bots": bots,
            "bots_differing": len(rows),
            "differing": [
                {
                    "intake_bot_id": str(bot_id),
                    "name": name,
                    "api_submission_count": api_count,
                    "warehouse_submissions": held,
                }
                for bot_id, name, api_count, held in rows[:SAMPLE]
            ],
        },
    )


def check_schema_drift(
    con: duckdb.DuckDBPyConnection, since_load_id: int | None = None
) -> CheckResult:
    """Schema changes in the newest bot versions, and answers to fields no schema declares.

    A field whose type changed from the previous recorded version is an error (the wide view
    column changes type under analysts); a new or removed field, or answers to undeclared
    fields, is a warning. Only schemas replaced since ``since_load_id`` (default: the latest
    load) and the submissions the latest load changed are looked at, so one change is
    reported once rather than forever.
    """
    latest = scalar(con, "select coalesce(max(load_id), 0) from load_runs")
    since = latest if since_load_id is None else since_load_id
    type_changes, new_fields, removed = _schema_changes(con, since)
    unknown_fields = _undeclared_answer_fields(con)
    return CheckResult(
        name="schema_drift",
        passed=not (type_changes or new_fields or removed or unknown_fields),
        severity=ERROR if type_changes else WARN,
        metadata={
            "since_load_id": since,
            "type_changes": type_changes[:SAMPLE],
            "new_fields": new_fields[:SAMPLE],
            "removed_fields": removed[:SAMPLE],
            "undeclared_answer_fields": unknown_fields[:SAMPLE],
            "counts": {
                "type_changes": len(type_changes),
                "new_fields": len(new_fields),
                "removed_fields": len(removed),
                "undeclared_answer_fields": len(unknown_fields),
            },
        },
    )


def _schema_changes(con: duckdb.DuckDBPyConnection, since: int) -> tuple[Fields, Fields, Fields]:
    """(type changes, new fields, removed fields) of the schemas replaced since load ``since``."""
    changes = con.execute(
        """
        with before as (
            select intake_bot_id, name, type from intake_bot_fields_previous
            where replaced_in_load >= ? and is_content is not true
        ),
        now as (
            select intake_bot_id, name, type from intake_bot_fields
            where is_content is not true
                and intake_bot_id in (select intake_bot_id from before)
        )
        select coalesce(now.intake_bot_id, before.intake_bot_id) as bot,
            coalesce(now.name, before.name) as field, before.type, now.type
        from now full outer join before
            on now.intake_bot_id = before.intake_bot_id and now.name = before.name
        where before.type is distinct from now.type
        order by 1, 2
        """,
        [since],
    ).fetchall()
    type_changes: Fields = [
        {"intake_bot_id": b, "field": f, "from": old, "to": new}
        for b, f, old, new in changes
        if old is not None and new is not None
    ]
    new_fields: Fields = [
        {"intake_bot_id": b, "field": f} for b, f, old, _ in changes if old is None
    ]
    removed: Fields = [{"intake_bot_id": b, "field": f} for b, f, _, new in changes if new is None]
    return type_changes, new_fields, removed


def _undeclared_answer_fields(con: duckdb.DuckDBPyConnection) -> Fields:
    """Per bot and field name, how many submissions the latest load changed answer a field
    their bot's schema does not declare (bots without a stored schema are left out)."""
    unknown = con.execute(
        """
        select a.intake_bot_id, a.field_name, count(distinct a.submission_id)
        from submission_answers as a
        where a.submission_id in (select submission_id from load_changed_submissions)
            and exists (
                select 1 from intake_bot_fields as f where f.intake_bot_id = a.intake_bot_id
            )
            and not exists (
                select 1 from intake_bot_fields as f
                where f.intake_bot_id = a.intake_bot_id and f.name = a.field_name
                    and f.is_content is not true
            )
        group by all order by 1, 2
        """
    ).fetchall()
    return [{"intake_bot_id": b, "field": f, "submissions": int(n)} for b, f, n in unknown]


def _newest_in_sync_state(con: duckdb.DuckDBPyConnection, column: str) -> datetime | None:
    """The newest value of a ``sync_state`` time column, written as ISO text or Unix seconds."""
    kind = con.execute(
        "select data_type from duckdb_columns() where table_name = 'sync_state'"
        " and schema_name = current_schema() and database_name = current_database()"
        " and column_name = ?",
        [column],
    ).fetchall()
    if not kind:
        return None
    if kind[0][0] in ("BIGINT", "DOUBLE", "INTEGER"):
        expression = f'to_timestamp(max("{column}"))'
    else:
        expression = f'max(try_cast("{column}" as timestamptz))'
    rows = con.execute(f"select {expression} from sync_state").fetchall()
    value = rows[0][0] if rows else None
    return value if isinstance(value, datetime) else None


def check_freshness(
    con: duckdb.DuckDBPyConnection,
    max_age: timedelta,
    now: datetime,
    severity: str = WARN,
) -> CheckResult:
    """The last successful sync is recent.

    A successful sync is a scan that reached the end (``sync_state.completed_at``); without
    that column (or any value in it), the newest state commit or row ``synced_at`` counts.
    """
    last_sync = _newest_in_sync_state(con, "completed_at")
    source = "sync_state.completed_at"
    if last_sync is None:
        candidates: list[datetime] = []
        for table in ("intake_bots", "submissions"):
            rows = con.execute(f"select max(synced_at) from {table}").fetchall()
            if rows and isinstance(rows[0][0], datetime):
                candidates.append(rows[0][0])
        state = _newest_in_sync_state(con, "updated_at")
        if state is not None:
            candidates.append(state)
        last_sync = max(candidates) if candidates else None
        source = "sync_state.updated_at / synced_at"
    loads = con.execute("select max(finished_at) from load_runs").fetchall()
    last_load = loads[0][0] if loads else None
    age = (now - last_sync).total_seconds() if last_sync else None
    return CheckResult(
        name="sync_freshness",
        passed=age is not None and age <= max_age.total_seconds(),
        severity=severity,
        metadata={
            "last_sync_at": last_sync.isoformat() if last_sync else None,
            "measured_from": source,
            "last_load_at": last_load.isoformat() if isinstance(last_load, datetime) else None,
            "age_seconds": round(age, 1) if age is not None else None,
            "max_age_seconds": max_age.total_seconds(),
        },
    )


def run_all_checks(
    con: duckdb.DuckDBPyConnection, *, max_sync_age: timedelta, now: datetime
) -> list[CheckResult]:
    return [
        check_unique_ids(con),
        check_submissions_have_bots(con),
        check_count_parity(con),
        check_schema_drift(con),
        check_freshness(con, max_sync_age, now),
    ]


# Under DuckDB's default limit (80% of RAM) the key uniqueness check over 9M answers took its
# process to 1.1 GB; bounded, what does not fit spills into the warehouse's private folder, not
# beside the published file.
CHECK_SETTINGS: dict[str, str | bool | int | float | list[str]] = {"memory_limit": "128MB"}


@contextlib.contextmanager
def published_connection(paths: DataPaths) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only, memory-bounded connection to the published snapshot (what analysts see),
    in the schema of ``paths``: the checks name their tables unqualified."""
    settings = {**CHECK_SETTINGS, "temp_directory": str(paths.writer_db.parent / "spill")}
    con = duckdb.connect(str(paths.published_db), read_only=True, config=settings)
    try:
        con.execute("set enable_progress_bar = false")  # a session option: no bar on stderr
        con.execute(f"use {quoted(paths.warehouse_schema)}")
        yield con
    finally:
        con.close()


def check_published(
    paths: DataPaths, *, max_sync_age: timedelta, now: datetime
) -> list[CheckResult]:
    """Every check on the published snapshot: what the pipeline runs after each load, in a
    process of its own (DuckDB's buffers would otherwise stay with the run's process)."""
    with published_connection(paths) as con:
        return run_all_checks(con, max_sync_age=max_sync_age, now=now)
