"""The published warehouse read back, as an analyst would: read-only connections, in the
schema of the paths given (``main``, or a workspace's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from iozen_etl.settings import DataPaths
from iozen_etl.warehouse.sql_files import quoted

# The tables a load fills from the lake and the state file: what two warehouses of the same
# data must hold alike.
DATA_TABLES = (
    "intake_bots",
    "intake_bot_fields",
    "submissions",
    "submission_answers",
    "webhooks",
    "sync_state",
    "replay_ledger",
)


def _connect(paths: DataPaths) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(paths.published_db), read_only=True)
    try:
        con.execute(f"use {quoted(paths.warehouse_schema)}")
    except BaseException:
        con.close()
        raise
    return con


def fetch(paths: DataPaths, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """Rows from the published snapshot, through a fresh read-only connection."""
    con = _connect(paths)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def table_rows(paths: DataPaths, table: str) -> list[tuple[Any, ...]]:
    return fetch(paths, f"select * from {table} order by all")


class Published:
    """The published warehouse, opened read-only once for several queries."""

    def __init__(self, paths: DataPaths) -> None:
        self._con = _connect(paths)

    def __enter__(self) -> Published:
        return self

    def __exit__(self, *_: object) -> None:
        self._con.close()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._con.execute(sql).fetchall()]
