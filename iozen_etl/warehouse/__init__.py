"""The DuckDB warehouse: newest-wins load from the lake, analyst views, checks, queries."""

from __future__ import annotations

from iozen_etl.warehouse.checks import CheckResult, run_all_checks
from iozen_etl.warehouse.load import files_owed, load_warehouse, rebuild_warehouse
from iozen_etl.warehouse.merge import TableCounts
from iozen_etl.warehouse.publish import WarehouseBusy
from iozen_etl.warehouse.query import (
    QueryFailed,
    QueryResult,
    WarehouseMissing,
    dataframe,
    format_table,
    run_query,
)
from iozen_etl.warehouse.report import LoadReport, RejectedFile, WorkspacesFailed

__all__ = [
    "CheckResult",
    "LoadReport",
    "QueryFailed",
    "QueryResult",
    "RejectedFile",
    "TableCounts",
    "WarehouseBusy",
    "WarehouseMissing",
    "WorkspacesFailed",
    "dataframe",
    "files_owed",
    "format_table",
    "load_warehouse",
    "rebuild_warehouse",
    "run_all_checks",
    "run_query",
]
