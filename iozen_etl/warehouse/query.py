"""Read-only queries on the published warehouse: rows, a pandas DataFrame, and the table, CSV or
JSON the ``sql`` command prints."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import duckdb

from iozen_etl.settings import DataPaths
from iozen_etl.warehouse.sql_files import quoted

if TYPE_CHECKING:
    import pandas as pd


class WarehouseMissing(RuntimeError):
    """No warehouse has been published yet."""


class QueryFailed(RuntimeError):
    """DuckDB refused the query; the message is DuckDB's first line."""


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]


@contextlib.contextmanager
def _published(paths: DataPaths) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to ``iozen.duckdb`` in the schema of ``paths`` (``main``, or a
    workspace's), closed at the end; DuckDB's errors become a ``QueryFailed`` with its first
    line (which names the table or column it could not find). Any schema is read by its name:
    ``select * from acme.submissions``."""
    if not paths.published_db.exists():
        raise WarehouseMissing(
            f"no warehouse at {paths.published_db}: run `iozen-etl sync` or `iozen-etl rebuild`"
        )
    # A fresh connection per query: within one process DuckDB hands back the cached (old)
    # database while any connection to the path is open, and a new one sees the latest publish.
    # A load publishes by renaming a new file into place, so a reader never blocks it.
    con = duckdb.connect(str(paths.published_db), read_only=True)
    try:
        con.execute(f"use {quoted(paths.warehouse_schema)}")
        yield con
    except duckdb.Error as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "error"
        raise QueryFailed(first_line) from error
    finally:
        con.close()


def run_query(paths: DataPaths, sql: str) -> QueryResult:
    """Run one query on ``iozen.duckdb`` read-only; a load in progress is never seen or blocked."""
    with _published(paths) as con:
        cursor = con.execute(sql)
        description = cursor.description or []
        rows = cursor.fetchall() if description else []
    return QueryResult(
        columns=tuple(str(column[0]) for column in description),
        rows=tuple(tuple(row) for row in rows),
    )


def dataframe(sql: str, paths: DataPaths | None = None) -> pd.DataFrame:
    """The result of one read-only query as a pandas DataFrame, for notebooks and scripts::

        from iozen_etl.warehouse import dataframe
        bots = dataframe("select * from v_bot_summary")

    ``paths`` defaults to ``$IOZEN_DATA_DIR`` (else ``./data``).
    """
    with _published(paths or DataPaths.from_env()) as con:
        return con.execute(sql).df()


def format_csv(result: QueryResult) -> str:
    """A header and one line per row; NULL is an empty field, times are ISO 8601."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(["" if value is None else _plain(value) for value in row])
    return out.getvalue().rstrip("\n")


def format_json(result: QueryResult) -> str:
    """One JSON object per row, in a list; times as ISO 8601, decimals as numbers."""
    records = [
        {name: _plain(value) for name, value in zip(result.columns, row, strict=True)}
        for row in result.rows
    ]
    return json.dumps(records, ensure_ascii=False, indent=1)


def _plain(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


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
