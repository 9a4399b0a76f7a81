"""One schema's part of a load: the lake files its ledger lacks, checked by their footers, and
their merge newest-wins inside the load's transaction (``load.py`` holds the session, the
transactions and the publication).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from iozen_etl.settings import DataPaths
from iozen_etl.sync.schemas import LAKE_TABLES
from iozen_etl.warehouse.lake_files import FooterChecks, LakeFile
from iozen_etl.warehouse.lake_source import LakeSource, open_source
from iozen_etl.warehouse.merge import (
    SNAPSHOT_TABLES,
    TableCounts,
    merge_bot_fields,
    merge_keyed,
    newest_snapshot,
    replace_snapshot,
    scalar,
)
from iozen_etl.warehouse.merge_submissions import SubmissionBatch, merge_submissions
from iozen_etl.warehouse.mirror import mirror_state
from iozen_etl.warehouse.report import RejectedFile
from iozen_etl.warehouse.sql_files import quoted
from iozen_etl.warehouse.wide_views import WideViewChanges, refresh_wide_views, unchanged_views


def read_ledger(
    con: duckdb.DuckDBPyConnection, schema: str | None = None
) -> dict[str, tuple[int, int, int]]:
    """The load ledger of ``schema`` (None: the connection's current schema)."""
    table = "load_ledger" if schema is None else f"{quoted(schema)}.load_ledger"
    rows = con.execute(f"select path, size_bytes, mtime_ns, inode from {table}").fetchall()
    return {str(path): (int(size), int(mtime), int(inode)) for path, size, mtime, inode in rows}


def _record_files(
    con: duckdb.DuckDBPyConnection,
    loaded: Sequence[tuple[LakeFile, int]],
    load_id: int,
    now: datetime,
) -> None:
    if not loaded:
        return
    # Bound as lists: registering an Arrow table makes duckdb import pandas, a slow import.
    paths = [f.rel_path for f, _ in loaded]
    con.execute("delete from load_ledger where path in (select unnest($1))", [paths])
    con.execute(
        "insert into load_ledger select unnest($1), unnest($2), unnest($3), unnest($4),"
        " unnest($5), unnest($6), $7, $8",
        [
            paths,
            [f.table for f, _ in loaded],
            [f.size_bytes for f, _ in loaded],
            [f.mtime_ns for f, _ in loaded],
            [f.inode for f, _ in loaded],
            [n for _, n in loaded],
            load_id,
            now,
        ],
    )


def _bot_batches(files: Sequence[tuple[LakeFile, int]], batch_rows: int) -> list[list[LakeFile]]:
    """Submission and answer files in batches of whole bot folders, about batch_rows rows each.

    A submission lives in one bot's folder with its answers, so a batch holds every version of
    the submissions it touches: merging batch after batch gives the rows (and the counts) of
    one merge of everything, while the working set stays one batch's size.
    """
    folders: dict[str, list[tuple[LakeFile, int]]] = {}
    for lake_file, rows in files:
        if lake_file.table in ("submissions", "submission_answers"):
            folder = lake_file.rel_path.split("/")[1]
            folders.setdefault(folder, []).append((lake_file, rows))
    batches: list[list[LakeFile]] = []
    batch: list[LakeFile] = []
    rows_in_batch = 0
    for folder in sorted(folders):
        if batch and rows_in_batch >= batch_rows:
            batches.append(batch)
            batch, rows_in_batch = [], 0
        batch.extend(f for f, _ in folders[folder])
        rows_in_batch += sum(rows for _, rows in folders[folder])
    if batch:
        batches.append(batch)
    return batches


@dataclass(frozen=True)
class NewFiles:
    """The lake files the ledger does not hold as they are now, checked by their footers."""

    # Where they are read (``source.root``): the lake, or local copies of its objects, which
    # ``source.close()`` removes.
    source: LakeSource
    ledger: Mapping[str, tuple[int, int, int]]
    good: list[tuple[LakeFile, int]]  # with their row counts
    layouts: Mapping[str, int]  # rel_path -> layout number (equal schemas, equal numbers)
    rejected: list[RejectedFile]


@dataclass(frozen=True)
class Merged:
    """What the load's transaction did."""

    load_id: int
    tables: dict[str, TableCounts]
    mirrored: dict[str, int]
    wide_views: WideViewChanges


def new_files(con: duckdb.DuckDBPyConnection, paths: DataPaths) -> NewFiles:
    """The new files of the lake of ``paths``, fetched where they can be read (the caller
    closes their ``source`` once merged)."""
    ledger = read_ledger(con)
    good: list[tuple[LakeFile, int]] = []
    layouts: dict[str, int] = {}
    rejected: list[RejectedFile] = []
    source = open_source(paths)
    try:
        footers = FooterChecks(source.root)
        for lake_file in source.fetch(source.list_files(ledger)):
            row_count, reason, layouts[lake_file.rel_path] = footers.check(lake_file)
            if reason is None:
                good.append((lake_file, row_count))
            else:
                rejected.append(RejectedFile(lake_file.rel_path, reason))
    except BaseException:
        source.close()
        raise
    return NewFiles(source, ledger, good, layouts, rejected)


def _paths_of(lake_root: Path, table: str, chosen: Sequence[LakeFile]) -> list[str]:
    return [str(lake_root / f.rel_path) for f in chosen if f.table == table]


def _uniform(layouts: Mapping[str, int], table: str, chosen: Sequence[LakeFile]) -> bool:
    return len({layouts[f.rel_path] for f in chosen if f.table == table}) <= 1


def _submission_batches(lake_root: Path, new: NewFiles, batch_rows: int) -> list[SubmissionBatch]:
    return [
        SubmissionBatch(
            submissions=_paths_of(lake_root, "submissions", chosen),
            answers=_paths_of(lake_root, "submission_answers", chosen),
            submissions_uniform=_uniform(new.layouts, "submissions", chosen),
            answers_uniform=_uniform(new.layouts, "submission_answers", chosen),
        )
        for chosen in _bot_batches(new.good, batch_rows)
    ]


def _merge_all(
    con: duckdb.DuckDBPyConnection,
    lake_root: Path,
    new: NewFiles,
    load_id: int,
    batch_rows: int,
) -> dict[str, TableCounts]:
    """Merge every new file, table by table; returns what each table's merge did."""
    every = [f for f, _ in new.good]
    tables: dict[str, TableCounts] = {}
    with merge_keyed(con, "intake_bots", _paths_of(lake_root, "intake_bots", every)) as bots:
        tables["intake_bots"] = bots.counts
    for table in SNAPSHOT_TABLES:
        # Compared by path relative to the lake root, as the ledger holds them.
        snapshot = newest_snapshot(
            [f.rel_path for f in every if f.table == table],
            [path for path in new.ledger if path.startswith(f"{table}/")],
        )
        tables[table] = replace_snapshot(
            con, table, None if snapshot is None else str(lake_root / snapshot)
        )
    tables["intake_bot_fields"] = merge_bot_fields(
        con, _paths_of(lake_root, "intake_bot_fields", every), load_id
    )
    tables["submissions"], tables["submission_answers"] = merge_submissions(
        con, _submission_batches(lake_root, new, batch_rows)
    )
    return {table: tables[table] for table in LAKE_TABLES}


def merge_new(
    con: duckdb.DuckDBPyConnection,
    paths: DataPaths,
    new: NewFiles,
    clock: Callable[[], datetime],
    batch_rows: int,
    sql_changed: bool,
) -> Merged:
    """The load's work inside its transaction, up to (not including) its ``load_runs`` row."""
    load_id = scalar(con, "select coalesce(max(load_id), 0) + 1 from load_runs")
    tables = _merge_all(con, new.source.root, new, load_id, batch_rows)
    _record_files(con, new.good, load_id, clock())
    mirrored = mirror_state(con, paths.state_db)
    schemas_moved = any(
        counts.inserted or counts.updated or counts.deleted
        for name, counts in tables.items()
        if name in ("intake_bots", "intake_bot_fields")
    )
    views = refresh_wide_views(con) if schemas_moved or sql_changed else unchanged_views(con)
    return Merged(load_id, tables, mirrored, views)
