"""Read-only queries on the published warehouse, and a plain-text table for a terminal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import duckdb

from iozen_etl.settings import DataPaths


class WarehouseMissing(RuntimeError):
    """No warehouse has been published yet."""


class QueryFailed(RuntimeError):
    """DuckDB refused the query; the message is DuckDB's first line."""


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]


def run_query(paths: DataPaths, sql: str) -> QueryResult:
    """Run one query on ``iozen.duckdb`` read-only; a load in progress is never seen or blocked."""
    if not paths.published_db.exists():
        raise WarehouseMissing(
            f"no warehouse at {paths.published_db}: run `iozen-etl sync` or `iozen-etl rebuild`"
        )
    # A fresh connection per query: within one process DuckDB hands back the cached (old)
    # database while any connection to the path is open, and a new one sees the latest publish.
    con = duckdb.connect(str(paths.published_db), read_only=True)
    try:
        try:
            cursor = con.execute(sql)
            description = cursor.description or []
            rows = cursor.fetchall() if description else []
        except duckdb.Error as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "error"
            raise QueryFailed(first_line) from error
    finally:
        con.close()
    return QueryResult(
        columns=tuple(str(column[0]) for column in description),
        rows=tuple(tuple(row) for row in rows),
    )


def _cell(value: object, max_width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, float | Decimal):
        text = f"{value:g}" if isinstance(value, float) else str(value)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    if len(text) > max_width:
        text = text[: max_width - 1] + "…"
    return text


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def format_table(result: QueryResult, max_width: int = 60) -> str:
    """Columns padded to their widest cell, numbers right-aligned, then a row count."""
    header: Sequence[str] = result.columns
    cells = [[_cell(value, max_width) for value in row] for row in result.rows]
    widths = [len(name) for name in header]
    for row in cells:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))
    lines = [
        " | ".join(name.ljust(widths[i]) for i, name in enumerate(header)).rstrip(),
        "-+-".join("-" * width for width in widths),
    ]
    for raw, row in zip(result.rows, cells, strict=True):
        lines.append(
            " | ".join(
                text.rjust(widths[i]) if _is_number(raw[i]) else text.ljust(widths[i])
                for i, text in enumerate(row)
            ).rstrip()
        )
    count = len(result.rows)
    lines.append(f"({count} row{'s' if count != 1 else ''})")
    return "\n".join(lines)
