"""``iozen-etl rebuild``: recreate the warehouse from the Parquet lake alone and publish it.

The lake is ``IOZEN_LAKE_URI`` when set (an object store: its new objects are copied under the
warehouse directory while the rebuild runs), else the data directory's ``parquet`` folder. With
``IOZEN_WORKSPACES_FILE``, every workspace of the file is rebuilt into its own schema.
"""

from __future__ import annotations

import argparse
import sys

import duckdb

from iozen_etl.settings import DataPaths
from iozen_etl.sync.lake_location import LakeLocationError
from iozen_etl.warehouse.load import rebuild_warehouse
from iozen_etl.warehouse.publish import WarehouseBusy
from iozen_etl.warehouse.report import LoadReport, WorkspacesFailed
from iozen_etl.workspaces import WorkspacesFileError, load_workspaces


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="fail at once if a load is running instead of waiting for it",
    )


def run(args: argparse.Namespace) -> int:
    paths = DataPaths.from_env()
    try:
        workspaces = [w for w in load_workspaces() if w.from_file]
        if workspaces:
            reports = rebuild_warehouse(
                paths,
                workspaces=[paths.for_workspace(w.name) for w in workspaces],
                wait=not args.no_wait,
            )
        else:
            reports = {"main": rebuild_warehouse(paths, wait=not args.no_wait)}
    except WorkspacesFailed as error:
        # The others were rebuilt and published; the failed ones are named with their reason.
        _print_reports(paths, error.loaded)
        print(f"iozen-etl rebuild: {error}", file=sys.stderr)
        return 1
    except (WorkspacesFileError, WarehouseBusy, LakeLocationError, OSError, duckdb.Error) as error:
        # A bad workspaces file, busy, a lake URI that cannot be used (its message repeats no
        # credential), or a file or object that could not be written or read (their errors
        # name it): the published snapshot is the one before, and a rebuild run again starts
        # over.
        first_line = str(error).strip().partition("\n")[0]
        print(f"iozen-etl rebuild: {first_line}", file=sys.stderr)
        return 1
    return 0 if _print_reports(paths, reports) else 1


def _print_reports(paths: DataPaths, reports: dict[str, LoadReport]) -> bool:
    """Print what each schema's rebuild did; whether every one is complete and published."""
    complete = True
    for schema, report in reports.items():
        lake = paths.lake if schema == "main" else paths.for_workspace(schema).lake
        where = "" if schema == "main" else f" (schema {schema})"
        loaded = sum(report.files_loaded.values())
        print(
            f"rebuilt {paths.published_db}{where} from {loaded} Parquet files of {lake}"
            f" in {report.seconds['total']}s"
        )
        for table, count in report.row_counts.items():
            print(f"  {table}: {count} rows")
        for rejected in report.rejected:
            print(f"  skipped {rejected.path}: {rejected.reason}", file=sys.stderr)
        if not report.published:
            print(f"  not published: {report.publish_skipped_reason}", file=sys.stderr)
        complete = complete and not report.rejected and report.published
    return complete
