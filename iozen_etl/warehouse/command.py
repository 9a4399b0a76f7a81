"""``iozen-etl sql "SELECT ..."``: run one read-only query on the published warehouse."""

from __future__ import annotations

import argparse
import sys

from iozen_etl.settings import DataPaths
from iozen_etl.warehouse.query import QueryFailed, WarehouseMissing, format_table, run_query


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help='the SQL to run, e.g. "select * from v_bot_summary"')
    parser.add_argument(
        "--max-width",
        type=int,
        default=60,
        help="cut longer cells to this many characters (default 60)",
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
    print(format_table(result, max_width=args.max_width))
    return 0
