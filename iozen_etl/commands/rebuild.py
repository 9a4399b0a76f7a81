"""``iozen-etl rebuild``: recreate the warehouse from the Parquet lake alone and publish it.

The lake is ``IOZEN_LAKE_URI`` when set (an object store: its new objects are copied under the
warehouse directory while the rebuild runs), else the data directory's ``parquet`` folder.
"""

from __future__ import annotations

import argparse
import sys

import duckdb

from iozen_etl.settings import DataPaths
from iozen_etl.sync.lake_location import LakeLocationError
from iozen_etl.warehouse.load import rebuild_warehouse
from iozen_etl.warehouse.publish import WarehouseBusy


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="fail at once if a load is running instead of waiting for it",
    )


def run(args: argparse.Namespace) -> int:
    paths = DataPaths.from_env()
    try:
        report = rebuild_warehouse(paths, wait=not args.no_wait)
    except (WarehouseBusy, LakeLocationError, OSError, duckdb.Error) as error:
        # Busy, a lake URI that cannot be used (its message repeats no credential), or a file
        # or object that could not be written or read (their errors name it): the published
        # snapshot is the one before, and a rebuild run again starts over.
        first_line = str(error).strip().partition("\n")[0]
        print(f"iozen-etl rebuild: {first_line}", file=sys.stderr)
        return 1
    loaded = sum(report.files_loaded.values())
    print(
        f"rebuilt {paths.published_db} from {loaded} Parquet files of {paths.lake}"
        f" in {report.seconds['total']}s"
    )
    for table, count in report.row_counts.items():
        print(f"  {table}: {count} rows")
    for rejected in report.rejected:
        print(f"  skipped {rejected.path}: {rejected.reason}", file=sys.stderr)
    if not report.published:
        print(f"  not published: {report.publish_skipped_reason}", file=sys.stderr)
    return 0 if not report.rejected and report.published else 1
