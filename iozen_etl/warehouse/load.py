"""Load new lake files into the DuckDB warehouse and publish a snapshot for readers.

One load, under an exclusive lock: list the lake, check the new files' footers, then in ONE
transaction apply ``sql/``, merge newest-wins, record the files in the load ledger, mirror the
SQLite state tables and refresh the per-bot wide views (``merge_new.py``);
then CHECKPOINT and publish a copy of the private writer file as ``iozen.duckdb``
(``publish.py``). Several workspaces load in one writer session, each into its own schema and
its own transactions, and are published together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import overload

import duckdb

from iozen_etl.settings import DataPaths
from iozen_etl.sync.schemas import LAKE_TABLES
from iozen_etl.warehouse.lake_files import LakeFile
from iozen_etl.warehouse.lake_source import open_source
from iozen_etl.warehouse.merge_new import Merged, NewFiles, merge_new, new_files, read_ledger
from iozen_etl.warehouse.publish import Publication, publish_copy, writer_lock
from iozen_etl.warehouse.report import (
    LoadReport,
    TableFacts,
    WorkspacesFailed,
    table_facts,
)
from iozen_etl.warehouse.sql_files import SQL_DIR, apply_sql, use_schema
from iozen_etl.warehouse.wide_views import (
    views_schema_name,
)

# Rows (submissions + answers) merged per batch: bounds the load's memory, not its result.
BATCH_ROWS = 1_000_000
# The working set is one batch; DuckDB's default limit (80% of RAM) would instead keep every
# block the load writes cached until it ends. A tight limit makes the merge spill sooner, which
# lowers the load's peak memory without slowing it (measured in docs/figures.md). Insertion
# order is not part of any table's meaning, and keeping it costs memory on every insert.
#
# Every load ends with a CHECKPOINT before its file is published, so writing the load's rows to
# the WAL first (and fsyncing it) is work done twice: with the threshold this low, the commit
# checkpoints instead, and DuckDB skips the WAL for any commit larger than
# auto_checkpoint_skip_wal_threshold. The commit is as durable either way; a load killed during
# that checkpoint is not committed, and its files stay unledgered for the next load.
WRITER_SETTINGS: dict[str, str | bool | int | float | list[str]] = {
    "memory_limit": "128MB",
    "preserve_insertion_order": False,
    "checkpoint_threshold": "1B",
}


@contextmanager
def _timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[phase] = time.perf_counter() - started


def _connect_writer(writer_db: Path) -> duckdb.DuckDBPyConnection:
    writer_db.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(writer_db), config=dict(WRITER_SETTINGS))
    try:
        con.execute("set TimeZone = 'UTC'")
        # The answer files are read twice (one file chosen per submission, then inserted).
        # Not in the connect config: there the parquet extension is not loaded yet.
        con.execute("set parquet_metadata_cache = true")
    except BaseException:
        con.close()
        raise
    return con


@dataclass(frozen=True)
class _Loaded:
    """One schema's committed load."""

    new: NewFiles
    merged: Merged
    facts: TableFacts
    seconds: dict[str, float]


def _load_schema(
    con: duckdb.DuckDBPyConnection,
    paths: DataPaths,
    mode: str,
    clock: Callable[[], datetime],
    sql_dir: Path,
    batch_rows: int,
) -> _Loaded:
    """Load the lake and state file of ``paths`` into its schema; committed, not published.

    A failure rolls back the transaction it happened in and is raised: nothing of it is left
    in the writer file's other schemas.
    """
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    started_at = clock()
    # First, so that the ledger exists on a new warehouse; one commit, not one per file.
    con.execute("begin transaction")
    try:
        use_schema(con, paths.warehouse_schema)
        sql_changed = apply_sql(con, sql_dir) > 0
        con.execute("commit")
    except BaseException:
        _rollback(con)
        raise
    new = new_files(con, paths)
    seconds["list_and_check"] = time.perf_counter() - started
    con.execute("begin transaction")
    try:
        with _timed(seconds, "merge"):
            merged = merge_new(con, paths, new, clock, batch_rows, sql_changed)
            con.execute(
                "insert into load_runs values (?, ?, ?, ?, ?, ?)",
                [merged.load_id, mode, started_at, clock(), len(new.good), len(new.rejected)],
            )
        with _timed(seconds, "commit"):
            con.execute("commit")  # and checkpoint (WRITER_SETTINGS)
    except BaseException:
        _rollback(con)
        raise
    finally:
        new.source.close()  # the local copies of an object store's objects
    return _Loaded(new, merged, table_facts(con), seconds)


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction. A write that failed (disk full, file too large)
    invalidates the database, and the rollback then fails too: the first error, which names
    the file, is the one to raise. The transaction is not committed either way."""
    with suppress(duckdb.Error):
        con.execute("rollback")


def _publish(
    con: duckdb.DuckDBPyConnection, paths: DataPaths
) -> tuple[Publication, dict[str, float]]:
    """CHECKPOINT the writer file and publish it, with the time each took."""
    seconds: dict[str, float] = {}
    with _timed(seconds, "checkpoint"):
        con.execute("checkpoint")
    with _timed(seconds, "publish"):
        # Copied while the writer connection is still open: its lock keeps everyone else out.
        publication = publish_copy(paths.writer_db, paths.published_db)
    return publication, seconds


def _load(
    paths: DataPaths,
    mode: str,
    clock: Callable[[], datetime],
    sql_dir: Path,
    batch_rows: int,
) -> LoadReport:
    started = time.perf_counter()
    con = _connect_writer(paths.writer_db)
    try:
        loaded = _load_schema(con, paths, mode, clock, sql_dir, batch_rows)
        publication, seconds = _publish(con, paths)
    finally:
        con.close()
    seconds["total"] = time.perf_counter() - started
    return _report(mode, loaded, publication, seconds)


def _load_workspaces(
    paths: DataPaths,
    workspaces: Sequence[DataPaths],
    mode: str,
    clock: Callable[[], datetime],
    sql_dir: Path,
    batch_rows: int,
) -> dict[str, LoadReport]:
    """Each workspace into its schema, one after the other in one writer session, then one
    publication; a workspace that fails is rolled back alone and named once the others are
    published."""
    _check_workspaces(paths, workspaces)
    started = time.perf_counter()
    loaded: dict[str, _Loaded] = {}
    failures: dict[str, Exception] = {}
    con = _connect_writer(paths.writer_db)
    try:
        for workspace in workspaces:
            try:
                loaded[workspace.warehouse_schema] = _load_schema(
                    con, workspace, mode, clock, sql_dir, batch_rows
                )
            except Exception as error:
                failures[workspace.warehouse_schema] = error
        try:
            publication, seconds = _publish(con, paths)
        except Exception as error:
            if not failures:
                raise
            # Nothing is published: the workspaces' errors say why (a failed write names its
            # file; the checkpoint after it only says the database was invalidated).
            raise _failed(failures, {}) from error
    finally:
        con.close()
    seconds["total"] = time.perf_counter() - started
    reports = {schema: _report(mode, one, publication, seconds) for schema, one in loaded.items()}
    if failures:
        raise _failed(failures, reports) from next(iter(failures.values()))
    return reports


def _failed(
    failures: Mapping[str, Exception], loaded: Mapping[str, LoadReport]
) -> WorkspacesFailed:
    why = {schema: f"{type(error).__name__}: {error}" for schema, error in failures.items()}
    return WorkspacesFailed(why, loaded)


def _check_workspaces(paths: DataPaths, workspaces: Sequence[DataPaths]) -> None:
    """Refuse workspaces that would share a schema or another warehouse."""
    schemas = [w.warehouse_schema for w in workspaces]
    taken = [*schemas, *(views_schema_name(schema) for schema in schemas)]
    clashes = sorted({name for name in taken if taken.count(name) > 1})
    if clashes:
        raise ValueError(f"workspaces would share the warehouse schema(s) {', '.join(clashes)}")
    elsewhere = [w.warehouse_schema for w in workspaces if w.writer_db != paths.writer_db]
    if elsewhere:
        raise ValueError(
            f"workspace(s) {', '.join(elsewhere)} belong to another warehouse than {paths.root}"
        )


def _report(
    mode: str, loaded: _Loaded, publication: Publication, shared: Mapping[str, float]
) -> LoadReport:
    """A schema's report: its own phases' seconds, and those of the publication it shared."""
    new, merged, facts = loaded.new, loaded.merged, loaded.facts
    seconds = {**loaded.seconds, **shared}
    return LoadReport(
        load_id=merged.load_id,
        mode=mode,
        files_loaded=_files_per_table(new.good),
        rejected=tuple(new.rejected),
        tables=merged.tables,
        row_counts=facts.row_counts,
        column_schemas=facts.column_schemas,
        column_comments=facts.column_comments,
        mirrored=merged.mirrored,
        wide_views=merged.wide_views,
        published=publication.skipped is None,
        publish_skipped_reason=publication.skipped,
        seconds={name: round(value, 4) for name, value in seconds.items()},
        publish_method=publication.method,
        publish_bytes_written=publication.bytes_written,
    )


def _files_per_table(good: Sequence[tuple[LakeFile, int]]) -> dict[str, int]:
    files_loaded = {table: 0 for table in LAKE_TABLES}
    for lake_file, _ in good:
        files_loaded[lake_file.table] += 1
    return files_loaded


def _utc_now() -> datetime:
    return datetime.now(UTC)


def lock_path(paths: DataPaths) -> Path:
    return paths.writer_db.with_name("load.lock")


def _run(
    paths: DataPaths,
    workspaces: Sequence[DataPaths] | None,
    mode: str,
    clock: Callable[[], datetime],
    sql_dir: Path,
    batch_rows: int,
) -> LoadReport | dict[str, LoadReport]:
    if workspaces is None:
        return _load(paths, mode, clock, sql_dir, batch_rows)
    return _load_workspaces(paths, workspaces, mode, clock, sql_dir, batch_rows)


@overload
def load_warehouse(
    paths: DataPaths,
    *,
    workspaces: None = None,
    wait: bool = True,
    clock: Callable[[], datetime] = _utc_now,
    sql_dir: Path = SQL_DIR,
    batch_rows: int = BATCH_ROWS,
) -> LoadReport: ...


@overload
def load_warehouse(
    paths: DataPaths,
    *,
    workspaces: Sequence[DataPaths],
    wait: bool = True,
    clock: Callable[[], datetime] = _utc_now,
    sql_dir: Path = SQL_DIR,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, LoadReport]: ...


def load_warehouse(
    paths: DataPaths,
    *,
    workspaces: Sequence[DataPaths] | None = None,
    wait: bool = True,
    clock: Callable[[], datetime] = _utc_now,
    sql_dir: Path = SQL_DIR,
    batch_rows: int = BATCH_ROWS,
) -> LoadReport | dict[str, LoadReport]:
    """Bring the lake files not loaded yet into the warehouse and publish it for readers.

    ``workspaces`` (each ``paths.for_workspace(name)``): load each into its own schema of the
    data directory's warehouse, in one session and one publication, and return each one's
    report by schema. A workspace that fails is rolled back alone; the others are published,
    and then ``WorkspacesFailed`` names the failed ones (and holds the others' reports).
    """
    with writer_lock(lock_path(paths), wait=wait):
        return _run(paths, workspaces, "incremental", clock, sql_dir, batch_rows)


def files_owed(paths: DataPaths) -> int:
    """How many loadable lake files the published warehouse does not hold yet.

    Nonzero after a load that failed or was killed: its files stayed out of the ledger, and a
    later sync that writes nothing new must still load them (the caller decides to load by
    this, not by what its own run wrote). Files whose footers fail their checks are not
    counted: every load rejects them again, and they would make every sync load. No published
    warehouse, or one that cannot be read or lacks the schema of ``paths``, owes every file.
    An object of an object store stays owed while the ledger holds it as unsettled
    (``lake_files.SETTLE_NS``): the next load takes it again.
    """
    ledger: Mapping[str, tuple[int, int, int]] = {}
    if paths.published_db.exists():
        try:
            with duckdb.connect(str(paths.published_db), read_only=True) as con:
                ledger = read_ledger(con, paths.warehouse_schema)
        except duckdb.Error:
            ledger = {}
    source = open_source(paths)
    footers = source.footers()
    return sum(1 for f in source.list_files(ledger) if footers.check(f)[1] is None)


@overload
def rebuild_warehouse(
    paths: DataPaths,
    *,
    workspaces: None = None,
    wait: bool = True,
    clock: Callable[[], datetime] = _utc_now,
    sql_dir: Path = SQL_DIR,
    batch_rows: int = BATCH_ROWS,
) -> LoadReport: ...


@overload
def rebuild_warehouse(
    paths: DataPaths,
    *,
    workspaces: Sequence[DataPaths],
    wait: bool = True,
    clock: Callable[[], datetime] = _utc_now,
    sql_dir: Path = SQL_DIR,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, LoadReport]: ...


def rebuild_warehouse(
    paths: DataPaths,
    *,
    workspaces: Sequence[DataPaths] | None = None,
    wait: bool = True,
    clock: Callable[[], datetime] = _utc_now,
    sql_dir: Path = SQL_DIR,
    batch_rows: int = BATCH_ROWS,
) -> LoadReport | dict[str, LoadReport]:
    """Recreate the warehouse from the lake alone (and the SQLite state), then publish it;
    with ``workspaces``, every one of their schemas (as ``load_warehouse``)."""
    with writer_lock(lock_path(paths), wait=wait):
        for leftover in (paths.writer_db, paths.writer_db.with_name(paths.writer_db.name + ".wal")):
            leftover.unlink(missing_ok=True)
        return _run(paths, workspaces, "rebuild", clock, sql_dir, batch_rows)
