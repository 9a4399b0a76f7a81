"""Load new lake files into the DuckDB warehouse and publish a snapshot for readers.

One load, under an exclusive lock: list the lake, check the new files' footers, then in ONE
transaction apply ``sql/``, merge newest-wins (``merge.py``), record the files in the load
ledger, mirror the SQLite state tables and refresh the per-bot wide views; then CHECKPOINT and
publish a copy of the private writer file as ``iozen.duckdb`` (``publish.py``).
"""

from __future__ import annotations

import hashlib
import sysconfig
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from iozen_etl.settings import DataPaths
from iozen_etl.sync.schemas import LAKE_TABLES
from iozen_etl.warehouse.lake_files import LakeFile, list_lake
from iozen_etl.warehouse.merge import (
    SNAPSHOT_TABLES,
    TableCounts,
    merge_answers,
    merge_bot_fields,
    merge_keyed,
    newest_snapshot,
    replace_snapshot,
    scalar,
)
from iozen_etl.warehouse.mirror import MIRRORED_TABLES, mirror_state
from iozen_etl.warehouse.publish import publish_copy, writer_lock
from iozen_etl.warehouse.wide_views import WideViewChanges, refresh_wide_views, unchanged_views


def _find_sql_dir() -> Path:
    """The ``sql/`` folder: the checkout's (source tree, editable install), else the wheel's.

    The files stay at the repository's top level; a wheel installs them as data files under
    ``<prefix>/share/iozen-etl/sql`` (``[tool.setuptools.data-files]`` in pyproject.toml).
    """
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "sql").is_dir():
        return checkout / "sql"
    return Path(sysconfig.get_path("data")) / "share" / "iozen-etl" / "sql"


SQL_DIR = _find_sql_dir()
REPORTED_TABLES = (*LAKE_TABLES, *MIRRORED_TABLES)
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


@dataclass(frozen=True)
class RejectedFile:
    """A lake file the load could not use; it is not ledgered, so a later load retries it."""

    path: str  # relative to the lake root
    reason: str


@dataclass(frozen=True)
class LoadReport:
    """The facts of one load (no answer values): what came in and what the tables look like."""

    load_id: int
    mode: str  # "incremental" or "rebuild"
    files_loaded: Mapping[str, int]
    rejected: tuple[RejectedFile, ...]
    tables: Mapping[str, TableCounts]
    row_counts: Mapping[str, int]
    column_schemas: Mapping[str, Mapping[str, str]]
    mirrored: Mapping[str, int]
    wide_views: WideViewChanges
    published: bool
    publish_skipped_reason: str | None
    seconds: Mapping[str, float] = field(default_factory=dict)
    # How the snapshot was made: "reflink", "spare" (changed blocks only) or "copy".
    publish_method: str = ""
    publish_bytes_written: int = 0
    # table -> column -> what it holds (comment on column, in sql/); columns without one omitted
    column_comments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def metadata(self) -> dict[str, object]:
        """A flat, JSON-friendly view for Dagster metadata."""
        return {
            "load_id": self.load_id,
            "mode": self.mode,
            "files_loaded": dict(self.files_loaded),
            "files_rejected": [asdict(r) for r in self.rejected],
            "rows": {name: asdict(counts) for name, counts in self.tables.items()},
            "row_counts": dict(self.row_counts),
            "column_schemas": {k: dict(v) for k, v in self.column_schemas.items()},
            "mirrored": dict(self.mirrored),
            "wide_views": asdict(self.wide_views),
            "published": self.published,
            "publish_skipped_reason": self.publish_skipped_reason,
            "publish_method": self.publish_method,
            "publish_bytes_written": self.publish_bytes_written,
            "seconds": dict(self.seconds),
        }


def sql_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """The DDL and view files, in the order the load applies them."""
    files = sorted(sql_dir.glob("*.sql"))
    if not files:
        # A wheel built without the data files: fail before touching the warehouse.
        raise FileNotFoundError(f"no .sql files in {sql_dir} (is sql/ installed?)")
    return files


def apply_sql(con: duckdb.DuckDBPyConnection, sql_dir: Path = SQL_DIR) -> int:
    """Apply the sql/ files the warehouse has not applied in their current version.

    Re-creating an unchanged view would still rewrite the catalog at every CHECKPOINT.
    Returns how many files were applied.
    """
    known = scalar(
        con,
        "select count(*) from duckdb_tables() where table_name = 'sql_files_applied'"
        " and schema_name = 'main' and database_name = current_database()",
    )
    applied: dict[str, str] = {}
    if known:
        rows = con.execute("select file_name, sha256 from sql_files_applied").fetchall()
        applied = {str(name): str(sha) for name, sha in rows}
    count = 0
    for path in sql_files(sql_dir):
        text = path.read_text(encoding="utf-8")
        digest = hashlib.sha256(text.encode()).hexdigest()
        if applied.get(path.name) == digest:
            continue
        con.execute(text)
        con.execute("delete from sql_files_applied where file_name = ?", [path.name])
        con.execute("insert into sql_files_applied values (?, ?)", [path.name, digest])
        count += 1
    return count


def _types_compatible(found: pa.DataType, declared: pa.DataType) -> bool:
    if found == declared:
        return True
    for same_family in (
        pa.types.is_timestamp,
        pa.types.is_integer,
        pa.types.is_floating,
    ):
        if same_family(found) and same_family(declared):
            return True
    if pa.types.is_string(declared) and (
        pa.types.is_string(found) or pa.types.is_large_string(found)
    ):
        return True
    if pa.types.is_list(declared) and (pa.types.is_list(found) or pa.types.is_large_list(found)):
        return _types_compatible(found.value_type, declared.value_type)
    return False


def _schema_problems(table: str, schema: pa.Schema) -> str | None:
    problems = []
    for declared in LAKE_TABLES[table]:
        index = schema.get_field_index(declared.name)
        if index < 0:
            problems.append(f"missing column {declared.name}")
        elif not _types_compatible(schema.field(index).type, declared.type):
            problems.append(
                f"column {declared.name} is {schema.field(index).type}, expected {declared.type}"
            )
    return "; ".join(problems) or None


class FooterChecks:
    """Checks new lake files by their Parquet footer alone, judging each distinct schema once.

    Most files of a table share one schema, so a file whose schema equals one already judged
    costs only the read of its footer. A schema is the Parquet one (what DuckDB binds) and the
    Arrow one the writer stored beside it (what the check reads). Files are given the same
    layout number when their schemas are equal: DuckDB then reads them alike, without unifying
    them by name.
    """

    # Schemas remembered per table; a lake with more distinct ones is judged file by file.
    REMEMBERED = 16

    def __init__(self, lake_root: Path) -> None:
        self._lake_root = lake_root
        self._seen: dict[str, list[tuple[pq.ParquetSchema, bytes, str | None, int]]] = {}
        self._layouts = 0

    def _judge(self, table: str, metadata: pq.FileMetaData) -> tuple[str | None, int]:
        schema = metadata.schema
        stored = (metadata.metadata or {}).get(b"ARROW:schema", b"")
        seen = self._seen.setdefault(table, [])
        for known, known_stored, problems, layout in seen:
            if stored == known_stored and schema.equals(known):
                return problems, layout
        problems = _schema_problems(table, schema.to_arrow_schema())
        self._layouts += 1
        if len(seen) < self.REMEMBERED:
            seen.append((schema, stored, problems, self._layouts))
        return problems, self._layouts

    def check(self, lake_file: LakeFile) -> tuple[int, str | None, int]:
        """(row count, None, layout) or (0, why the file cannot be loaded, -1)."""
        try:
            metadata = pq.read_metadata(self._lake_root / lake_file.rel_path)
        except (OSError, pa.ArrowException) as error:
            return 0, f"unreadable Parquet file: {error}", -1
        problems, layout = self._judge(lake_file.table, metadata)
        if problems:
            return 0, problems, -1
        return int(metadata.num_rows), None, layout


def _read_ledger(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int, int]]:
    rows = con.execute("select path, size_bytes, mtime_ns, inode from load_ledger").fetchall()
    return {str(path): (int(size), int(mtime), int(inode)) for path, size, mtime, inode in rows}


def _record_files(
    con: duckdb.DuckDBPyConnection,
    loaded: Sequence[tuple[LakeFile, int]],
    load_id: int,
    now: datetime,
) -> None:
    if not loaded:
        return
    # Bound as lists: registering an Arrow table makes duckdb import pandas (0.7 s).
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


def _row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counts = {}
    for table in REPORTED_TABLES:
        counts[table] = scalar(con, f"select count(*) from {table}")
    return counts


def _column_schemas(
    con: duckdb.DuckDBPyConnection,
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """Each reported table's columns and types, and the comments of those that have one."""
    schemas: dict[str, dict[str, str]] = {table: {} for table in REPORTED_TABLES}
    comments: dict[str, dict[str, str]] = {table: {} for table in REPORTED_TABLES}
    rows = con.execute(
        "select table_name, column_name, data_type, comment from duckdb_columns()"
        " where schema_name = 'main' and database_name = current_database()"
        " order by table_name, column_index"
    ).fetchall()
    for table, column, data_type, comment in rows:
        if table in schemas:
            schemas[table][str(column)] = str(data_type)
            if comment:
                comments[table][str(column)] = str(comment)
    return schemas, comments


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


def _sum_counts(a: TableCounts, b: TableCounts) -> TableCounts:
    return TableCounts(
        inserted=a.inserted + b.inserted,
        updated=a.updated + b.updated,
        unchanged=a.unchanged + b.unchanged,
        deleted=a.deleted + b.deleted,
    )


def _merge_all(
    con: duckdb.DuckDBPyConnection,
    lake_root: Path,
    files: Sequence[tuple[LakeFile, int]],
    ledger: Mapping[str, tuple[int, int, int]],
    load_id: int,
    batch_rows: int,
    layouts: Mapping[str, int],
) -> dict[str, TableCounts]:
    def paths_of(table: str, chosen: Sequence[LakeFile]) -> list[str]:
        return [str(lake_root / f.rel_path) for f in chosen if f.table == table]

    def uniform(table: str, chosen: Sequence[LakeFile]) -> bool:
        return len({layouts[f.rel_path] for f in chosen if f.table == table}) <= 1

    every = [f for f, _ in files]
    tables = {"intake_bots": merge_keyed(con, "intake_bots", paths_of("intake_bots", every))}
    con.execute("drop table plan_intake_bots")
    for table in SNAPSHOT_TABLES:
        # Compared by path relative to the lake root, as the ledger holds them.
        snapshot = newest_snapshot(
            [f.rel_path for f in every if f.table == table],
            [path for path in ledger if path.startswith(f"{table}/")],
        )
        tables[table] = replace_snapshot(
            con, table, None if snapshot is None else str(lake_root / snapshot)
        )
    tables["intake_bot_fields"] = merge_bot_fields(
        con, paths_of("intake_bot_fields", every), load_id
    )
    tables["submissions"] = tables["submission_answers"] = TableCounts()
    con.execute("create or replace temp table changed_submissions (submission_id varchar)")
    for batch in _bot_batches(files, batch_rows) or [[]]:
        counts = merge_keyed(
            con,
            "submissions",
            paths_of("submissions", batch),
            uniform=uniform("submissions", batch),
        )
        tables["submissions"] = _sum_counts(tables["submissions"], counts)
        # After submissions: answers are accepted against the stored submission versions.
        counts = merge_answers(
            con,
            paths_of("submission_answers", batch),
            uniform=uniform("submission_answers", batch),
        )
        tables["submission_answers"] = _sum_counts(tables["submission_answers"], counts)
        con.execute(
            "insert into changed_submissions"
            " select id from plan_submissions where action in ('insert', 'update')"
            " union select submission_id from answers_changed"
        )
        con.execute("drop table answers_changed")
        con.execute("drop table plan_submissions")
    # Replaced, not emptied: after a full load it holds a million ids, and deleting them row
    # by row would make the next (small) load pay for the previous one.
    con.execute(
        "create or replace table load_changed_submissions as"
        " select distinct submission_id from changed_submissions"
    )
    con.execute("drop table changed_submissions")
    return {table: tables[table] for table in LAKE_TABLES}


def _load(
    paths: DataPaths,
    mode: str,
    clock: Callable[[], datetime],
    sql_dir: Path,
    batch_rows: int,
) -> LoadReport:
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    started_at = clock()
    paths.writer_db.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(paths.writer_db), config=dict(WRITER_SETTINGS))
    try:
        con.execute("set TimeZone = 'UTC'")
        # The answer files are read twice (one file chosen per submission, then inserted).
        # Not in the connect config: there the parquet extension is not loaded yet.
        con.execute("set parquet_metadata_cache = true")
        # First, so that the ledger exists on a new warehouse; one commit, not one per file.
        con.execute("begin transaction")
        sql_changed = apply_sql(con, sql_dir) > 0
        con.execute("commit")
        lake_root = paths.parquet
        ledger = _read_ledger(con)
        pending = list_lake(lake_root, ledger)
        good: list[tuple[LakeFile, int]] = []
        layouts: dict[str, int] = {}
        rejected: list[RejectedFile] = []
        footers = FooterChecks(lake_root)
        for lake_file in pending:
            row_count, reason, layouts[lake_file.rel_path] = footers.check(lake_file)
            if reason is None:
                good.append((lake_file, row_count))
            else:
                rejected.append(RejectedFile(lake_file.rel_path, reason))
        seconds["list_and_check"] = time.perf_counter() - started

        phase = time.perf_counter()
        con.execute("begin transaction")
        try:
            load_id = scalar(con, "select coalesce(max(load_id), 0) + 1 from load_runs")
            tables = _merge_all(con, lake_root, good, ledger, load_id, batch_rows, layouts)
            _record_files(con, good, load_id, clock())
            mirrored = mirror_state(con, paths.state_db)
            schemas_moved = any(
                counts.inserted or counts.updated or counts.deleted
                for name, counts in tables.items()
                if name in ("intake_bots", "intake_bot_fields")
            )
            views = (
                refresh_wide_views(con) if schemas_moved or sql_changed else unchanged_views(con)
            )
            con.execute(
                "insert into load_runs values (?, ?, ?, ?, ?, ?)",
                [load_id, mode, started_at, clock(), len(good), len(rejected)],
            )
            seconds["merge"] = time.perf_counter() - phase
            phase = time.perf_counter()
            con.execute("commit")  # and checkpoint (WRITER_SETTINGS)
            seconds["commit"] = time.perf_counter() - phase
        except BaseException:
            con.execute("rollback")
            raise

        row_counts = _row_counts(con)
        column_schemas, column_comments = _column_schemas(con)
        phase = time.perf_counter()
        con.execute("checkpoint")
        seconds["checkpoint"] = time.perf_counter() - phase
        phase = time.perf_counter()
        # Copied while the writer connection is still open: its lock keeps everyone else out.
        publication = publish_copy(paths.writer_db, paths.published_db)
        seconds["publish"] = time.perf_counter() - phase
    finally:
        con.close()
    seconds["total"] = time.perf_counter() - started
    files_loaded = {table: 0 for table in LAKE_TABLES}
    for lake_file, _ in good:
        files_loaded[lake_file.table] += 1
    return LoadReport(
        load_id=load_id,
        mode=mode,
        files_loaded=files_loaded,
        rejected=tuple(rejected),
        tables=tables,
        row_counts=row_counts,
        column_schemas=column_schemas,
        column_comments=column_comments,
        mirrored=mirrored,
        wide_views=views,
        published=publication.skipped is None,
        publish_skipped_reason=publication.skipped,
        seconds={name: round(value, 4) for name, value in seconds.items()},
        publish_method=publication.method,
        publish_bytes_written=publication.bytes_written,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _lock_path(paths: DataPaths) -> Path:
    return paths.writer_db.with_name("load.lock")


def load_warehouse(
    paths: DataPaths,
    *,
    wait: bool = True,
    clock: Callable[[], datetime] = _utc_now,
    sql_dir: Path = SQL_DIR,
    batch_rows: int = BATCH_ROWS,
) -> LoadReport:
    """Bring the lake files not loaded yet into the warehouse and publish it for readers."""
    with writer_lock(_lock_path(paths), wait=wait):
        return _load(paths, "incremental", clock, sql_dir, batch_rows)


def rebuild_warehouse(
    paths: DataPaths,
    *,
    wait: bool = True,
    clock: Callable[[], datetime] = _utc_now,
    sql_dir: Path = SQL_DIR,
    batch_rows: int = BATCH_ROWS,
) -> LoadReport:
    """Recreate the warehouse from the lake alone (and the SQLite state), then publish it."""
    with writer_lock(_lock_path(paths), wait=wait):
        for leftover in (paths.writer_db, paths.writer_db.with_name(paths.writer_db.name + ".wal")):
            leftover.unlink(missing_ok=True)
        return _load(paths, "rebuild", clock, sql_dir, batch_rows)
