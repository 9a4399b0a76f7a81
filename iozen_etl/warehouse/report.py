"""What a load reports: the facts of the load, and of the tables after it (no answer values)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import duckdb

from iozen_etl.sync.schemas import LAKE_TABLES
from iozen_etl.warehouse.merge import TableCounts, scalar
from iozen_etl.warehouse.mirror import MIRRORED_TABLES
from iozen_etl.warehouse.wide_views import WideViewChanges

REPORTED_TABLES = (*LAKE_TABLES, *MIRRORED_TABLES)


@dataclass(frozen=True)
class RejectedFile:
    """A lake file the load could not use; it is not ledgered, so a later load retries it."""

    path: str  # relative to the lake root
    reason: str


@dataclass(frozen=True)
class LoadReport:
    """The facts of one load (no answer values): what came in and what the tables look like."""

    load_id: int
    mode: str  # "incremental" or "rebuild"
    files_loaded: Mapping[str, int]
    rejected: tuple[RejectedFile, ...]
    tables: Mapping[str, TableCounts]
    row_counts: Mapping[str, int]
    column_schemas: Mapping[str, Mapping[str, str]]
    mirrored: Mapping[str, int]
    wide_views: WideViewChanges
    published: bool
    publish_skipped_reason: str | None
    seconds: Mapping[str, float] = field(default_factory=dict)
    # How the snapshot was made: "reflink", "spare" (changed blocks only) or "copy".
    publish_method: str = ""
    publish_bytes_written: int = 0
    # table -> column -> what it holds (comment on column, in sql/); columns without one omitted
    column_comments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def metadata(self) -> dict[str, object]:
        """A flat, JSON-friendly view for Dagster metadata."""
        return {
            "load_id": self.load_id,
            "mode": self.mode,
            "files_loaded": dict(self.files_loaded),
            "files_rejected": [asdict(r) for r in self.rejected],
            "rows": {name: asdict(counts) for name, counts in self.tables.items()},
            "row_counts": dict(self.row_counts),
            "column_schemas": {k: dict(v) for k, v in self.column_schemas.items()},
            "mirrored": dict(self.mirrored),
            "wide_views": asdict(self.wide_views),
            "published": self.published,
            "publish_skipped_reason": self.publish_skipped_reason,
            "publish_method": self.publish_method,
            "publish_bytes_written": self.publish_bytes_written,
            "seconds": dict(self.seconds),
        }


class WorkspacesFailed(RuntimeError):
    """A load of several workspaces in which some failed: each was rolled back alone, and the
    others were committed and published (``loaded``; empty if the publication failed too)."""

    def __init__(self, failures: Mapping[str, str], loaded: Mapping[str, LoadReport]) -> None:
        self.failures = dict(failures)  # schema -> why, as "ErrorClass: message"
        self.loaded = dict(loaded)
        reasons = "; ".join(f"{schema}: {why}" for schema, why in self.failures.items())
        super().__init__(f"warehouse load failed for workspace(s) {reasons}")


@dataclass(frozen=True)
class TableFacts:
    """Each reported table's row count, its columns' types, and the comments of those that
    have one (comment on column, in sql/)."""

    row_counts: dict[str, int]
    column_schemas: dict[str, dict[str, str]]
    column_comments: dict[str, dict[str, str]]


def table_facts(con: duckdb.DuckDBPyConnection) -> TableFacts:
    return TableFacts(_row_counts(con), *_column_schemas(con))


def _row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counts = {}
    for table in REPORTED_TABLES:
        counts[table] = scalar(con, f"select count(*) from {table}")
    return counts


def _column_schemas(
    con: duckdb.DuckDBPyConnection,
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """Each reported table's columns and types, and the comments of those that have one."""
    schemas: dict[str, dict[str, str]] = {table: {} for table in REPORTED_TABLES}
    comments: dict[str, dict[str, str]] = {table: {} for table in REPORTED_TABLES}
    rows = con.execute(
        "select table_name, column_name, data_type, comment from duckdb_columns()"
        " where schema_name = current_schema() and database_name = current_database()"
        " order by table_name, column_index"
    ).fetchall()
    for table, column, data_type, comment in rows:
        if table in schemas:
            schemas[table][str(column)] = str(data_type)
            if comment:
                comments[table][str(column)] = str(comment)
    return schemas, comments
