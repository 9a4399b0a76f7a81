"""``iozen-etl sql "SELECT ..."``: run one read-only query on the published warehouse and print
it as a table, CSV or JSON."""

from __future__ import annotations

import argparse
import sys

from iozen_etl.settings import DataPaths
from iozen_etl.warehouse.query import (
    QueryFailed,
    WarehouseMissing,
    format_csv,
    format_json,
    format_table,
    run_query,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help='the SQL to run, e.g. "select * from v_bot_summary"')
    parser.add_argument(
        "--max-width",
        type=int,
        default=60,
        help="with --format table, cut longer cells to this many characters (default 60)",
    )
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table for people (default), csv or json for scripts (whole cells, ISO times)",
    )
    parser.epilog = (
        "Exits 0 with the result on stdout; 1 when DuckDB refuses the query (its message, which "
        "names the table or column, on stderr); 2 when there is no warehouse yet."
    )


def run(args: argparse.Namespace) -> int:
    paths = DataPaths.from_env()
    try:
        result = run_query(paths, args.query)
    except WarehouseMissing as error:
        print(f"iozen-etl sql: {error}", file=sys.stderr)
        return 2
    except QueryFailed as error:
        print(f"iozen-etl sql: {error}", file=sys.stderr)
        return 1
    if args.format == "csv":
        print(format_csv(result))
    elif args.format == "json":
        print(format_json(result))
    else:
        print(format_table(result, max_width=args.max_width))
    return 0
