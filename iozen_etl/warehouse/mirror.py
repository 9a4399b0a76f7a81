"""Copy the operational tables from the SQLite state file into the warehouse for analysts.

``sync_state`` and ``replay_ledger`` are committed per page / per row in SQLite by the sync and
the replay; the load copies them whole (they hold one row per stream or per replayed CSV row,
small next to the submissions), read through ``StateStore.read_table``. A missing file or table
gives an empty table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from iozen_etl.sync.state import StateFileError, StateStore, StoredTable
from iozen_etl.warehouse.merge import scalar
from iozen_etl.warehouse.sql_files import quoted

MIRRORED_TABLES = ("sync_state", "replay_ledger")

# Columns used when SQLite has no such table yet, so that analysts' queries still bind.
_EMPTY_COLUMNS: dict[str, Sequence[tuple[str, str]]] = {
    "sync_state": (
        ("stream", "varchar"),
        ("intake_bot_id", "varchar"),
        ("resume_point", "varchar"),
        ("updated_at", "varchar"),
    ),
    "replay_ledger": (
        ("idempotency_key", "varchar"),
        ("status", "varchar"),
        ("updated_at", "varchar"),
    ),
}


_SQL_TYPES = {
    pa.int64(): "bigint",
    pa.float64(): "double",
    pa.binary(): "blob",
    pa.bool_(): "boolean",
    pa.string(): "varchar",
}


def _duckdb_type(declared: str) -> pa.DataType:
    """SQLite type affinity rules, reduced to the Arrow types DuckDB maps cleanly."""
    upper = declared.upper()
    if "INT" in upper:
        return pa.int64()
    if any(word in upper for word in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return pa.float64()
    if "BLOB" in upper:
        return pa.binary()
    if upper in ("BOOL", "BOOLEAN"):
        return pa.bool_()
    return pa.string()


def _as_arrow(stored: StoredTable) -> pa.Table:
    """The stored table typed by its declared column types."""
    arrays = []
    for index, (_, declared) in enumerate(stored.columns):
        arrow_type = _duckdb_type(declared)
        values = [_coerce(row[index], arrow_type) for row in stored.rows]
        arrays.append(pa.array(values, type=arrow_type))
    return pa.Table.from_arrays(arrays, names=[name for name, _ in stored.columns])


def _coerce(value: object, arrow_type: pa.DataType) -> object:
    """SQLite is dynamically typed: a value that does not fit its declared type becomes text."""
    if value is None:
        return None
    if pa.types.is_string(arrow_type):
        return value if isinstance(value, str) else str(value)
    if pa.types.is_integer(arrow_type):
        return value if isinstance(value, int) else None
    if pa.types.is_floating(arrow_type):
        return float(value) if isinstance(value, (int, float)) else None
    if pa.types.is_boolean(arrow_type):
        return bool(value) if isinstance(value, int) else None
    return value if isinstance(value, bytes) else None


def mirror_state(con: duckdb.DuckDBPyConnection, state_db: Path) -> dict[str, int]:
    """Replace the mirrored tables with the SQLite copies; returns their row counts."""
    counts: dict[str, int] = {}
    for table in MIRRORED_TABLES:
        try:
            stored = StateStore.read_table(state_db, table)
        except sqlite3.Error as error:
            # SQLite's message names no file ("file is not a database").
            raise StateFileError(f"state file {state_db}: {error}") from error
        if stored is None:
            _empty_mirror(con, table)
            counts[table] = 0
        else:
            counts[table] = _replace_mirror(con, table, _as_arrow(stored))
    return counts


def _empty_mirror(con: duckdb.DuckDBPyConnection, table: str) -> None:
    exists = scalar(
        con,
        "select count(*) from duckdb_tables() where table_name = ?"
        " and schema_name = current_schema() and database_name = current_database()",
        [table],
    )
    if exists:
        con.execute(f"delete from {table}")
    else:
        cols = ", ".join(f"{name} {kind}" for name, kind in _EMPTY_COLUMNS[table])
        con.execute(f"create table {table} ({cols})")


def _replace_mirror(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> int:
    cols = ", ".join(f"{quoted(f.name)} {_SQL_TYPES.get(f.type, 'varchar')}" for f in data.schema)
    con.execute(f"create or replace table {table} ({cols})")
    if data.num_rows:
        # Inserted from Python lists: registering an Arrow table makes duckdb import pandas,
        # which alone costs more than a small load.
        unnested = ", ".join(f"unnest(${i + 1})" for i in range(data.num_columns))
        con.execute(
            f"insert into {table} select {unnested}",
            [column.to_pylist() for column in data.columns],
        )
    return int(data.num_rows)
