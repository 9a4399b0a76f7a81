"""Newest-wins merge of new lake files into the warehouse tables (inside the caller's transaction).

Rules, the same for an incremental load and a rebuild so that both give the same rows:

* ``intake_bots``, ``submissions`` merge by ``id``. A row is replaced only by a
  version with a newer ``updated_at``, or an equal one synced no earlier (``synced_at``), so
  retries, overlapping pages, out-of-order loads and backfills never move a row backwards.
* ``webhooks`` is a snapshot: each sync run writes the whole listing to one file named by its
  ``synced_at`` (an empty listing is a file with no rows), so the newest file by name is the
  whole truth and replaces the table; an older snapshot loaded later is ignored. Merging by id
  would never see an endpoint deleted in the API.
* ``intake_bot_fields`` are replaced per bot when a newer-or-equal bot version
  (``bot_updated_at``) arrives; the replaced schema is kept in ``intake_bot_fields_previous``.
* ``submission_answers`` are replaced per submission when a newer-or-equal submission version
  (``submission_updated_at``) arrives, and answers older than their submission's stored version
  are dropped: a newer version with fewer answers leaves no stale ones behind
  (``merge_submissions.py``).

Within one load, several files may hold the same key; the newest version wins, then the latest
sync, then the greatest file path, so the choice never depends on the order files were listed.
A load reads only the new files, plus one scan of the key and version columns of
``submissions`` and of ``submission_answers.submission_id``; it rewrites only the rows that
change (deleted by rowid, inserted from the staged files), so its cost follows what is new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import duckdb

from iozen_etl.sync.schemas import LAKE_TABLES

EPOCH = "timestamptz '1970-01-01 00:00:00+00'"
SNAPSHOT_TABLES = ("webhooks",)


@dataclass(frozen=True)
class TableCounts:
    """What one load did to one table, in rows."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0  # staged rows older than, or at the same version as, the stored ones
    deleted: int = 0  # rows dropped because their bot schema or submission version moved on

    def __add__(self, other: TableCounts) -> TableCounts:
        return TableCounts(
            inserted=self.inserted + other.inserted,
            updated=self.updated + other.updated,
            unchanged=self.unchanged + other.unchanged,
            deleted=self.deleted + other.deleted,
        )


@dataclass(frozen=True)
class MergePlan:
    """What a merge step did: its counts, and its plan for the steps after it.

    ``table`` names a temp table with one row per staged key and its ``action`` (insert,
    update, refresh or skip); the merge function that returns the plan documents its other
    columns. The plan owns the table: leaving its ``with`` block drops it. On an error the
    load rolls back its transaction, which drops the table too.
    """

    con: duckdb.DuckDBPyConnection
    table: str
    counts: TableCounts

    def __enter__(self) -> MergePlan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.con.execute(f"drop table {self.table}")


def column_list(table: str, prefix: str = "") -> str:
    """The lake table's columns, comma separated, each after ``prefix`` (a table alias)."""
    return ", ".join(f"{prefix}{field.name}" for field in LAKE_TABLES[table])


def scan_with_filename(table: str) -> str:
    """A read of the given files (bound as parameter ``$files``) with the table's columns."""
    return (
        f"(select {column_list(table)}, filename from read_parquet($files, union_by_name = true,"
        " filename = true, hive_partitioning = false))"
    )


def read_files(uniform: bool, options: str = "") -> str:
    """``read_parquet`` over the files bound as ``$files``, columns matched by name.

    ``uniform``: every file has the same column names and types (the load read each footer).
    Then DuckDB reads each file as the first; otherwise ``union_by_name`` also unifies the
    types (an int32 in one file and an int64 in another), which costs time on every file.
    """
    union = "false" if uniform else "true"
    return f"read_parquet($files, union_by_name = {union}, hive_partitioning = false{options})"


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> int:
    """The first column of the first row as an int (0 for NULL), with the result drained.

    duckdb 2.0 keeps a half-read result open and refuses the next statement, so never fetchone.
    """
    rows = con.execute(sql, list(params)).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def action_counts(con: duckdb.DuckDBPyConnection, plan: str, weight: str = "1") -> dict[str, int]:
    """The plan's rows (or the sum of ``weight``) per action."""
    rows = con.execute(f"select action, sum({weight}) from {plan} group by action").fetchall()
    return {str(action): int(total) for action, total in rows}


# --- id-keyed tables -------------------------------------------------------------------------


def merge_keyed(
    con: duckdb.DuckDBPyConnection, table: str, files: Sequence[str], *, uniform: bool = False
) -> MergePlan:
    """Merge one of the id-keyed tables.

    The plan's table holds, per staged id, its ``action`` and ``version``: for applied rows
    (insert, update, refresh) the row's stored ``updated_at`` after the merge. An equal version is
    re-applied (a later sync of the same version) but counted unchanged: the API bumps
    ``updated_at`` whenever a row changes.
    """
    plan = f"plan_{table}"
    if not files:
        con.execute(
            f"create or replace temp table {plan} (id varchar, version timestamptz, rid bigint,"
            " file_index bigint, file_row_number bigint, staged_rows bigint, action varchar)"
        )
        return MergePlan(con, plan, TableCounts())
    # Sorted, so that the index of a file in the list orders files as their names do.
    files = sorted(files)
    stage = _stage_newest_keys(con, table, files, uniform)
    _plan_keyed(con, table, stage, plan)
    con.execute(f"drop table {stage}")
    counts = action_counts(con, plan)
    if counts.get("update", 0) + counts.get("refresh", 0):
        con.execute(
            f"delete from {table} where rowid in"
            f" (select rid from {plan} where action in ('update', 'refresh'))"
        )
    _insert_applied_rows(con, table, plan, files, uniform)
    return MergePlan(
        con,
        plan,
        TableCounts(
            inserted=counts.get("insert", 0),
            updated=counts.get("update", 0),
            unchanged=counts.get("refresh", 0) + counts.get("skip", 0),
        ),
    )


def _stage_newest_keys(
    con: duckdb.DuckDBPyConnection, table: str, files: list[str], uniform: bool
) -> str:
    """A temp table of the newest staged version of each id, and where it sits in the files."""
    stage = f"stage_{table}"
    # Only the key and version columns are staged: the wide rows (the answers JSON) are read
    # once more by the insert, straight from the files, rather than copied and windowed.
    con.execute(
        f"""
        create or replace temp table {stage} as
        select id, updated_at, synced_at, file_index, file_row_number,
            count(*) over () as staged_rows
        from {read_files(uniform, ", file_row_number = true")}
        qualify row_number() over (partition by id order by coalesce(updated_at, {EPOCH}) desc,
            coalesce(synced_at, {EPOCH}) desc, file_index desc, file_row_number desc) = 1
        """,
        {"files": files},
    )
    return stage


def _plan_keyed(con: duckdb.DuckDBPyConnection, table: str, stage: str, plan: str) -> None:
    """Create the plan: each staged id against the stored row's version."""
    version_s = f"coalesce(s.updated_at, {EPOCH})"
    version_t = f"coalesce(t.updated_at, {EPOCH})"
    # Only the key and version columns of the stored table are read (one scan of the id
    # column); rows are then deleted by rowid.
    con.execute(
        f"""
        create or replace temp table {plan} as
        select s.id, {version_s} as version, t.rid, s.file_index, s.file_row_number,
            s.staged_rows,
            case
                when t.id is null then 'insert'
                when {version_s} > {version_t} then 'update'
                when {version_s} = {version_t}
                    and coalesce(s.synced_at, {EPOCH}) >= coalesce(t.synced_at, {EPOCH})
                    then 'refresh'
                else 'skip'
            end as action
        from {stage} as s
        left join (select rowid as rid, id, updated_at, synced_at from {table}) as t
            on t.id = s.id
        """
    )


def _insert_applied_rows(
    con: duckdb.DuckDBPyConnection, table: str, plan: str, files: list[str], uniform: bool
) -> None:
    cols = column_list(table)
    # Usually (new pages, a rebuild) every staged row is applied: no id is staged twice and
    # none is skipped, so the rows go in without the join.
    everything = not scalar(
        con,
        f"select count(*) from {plan} where action = 'skip' or staged_rows <> (select count(*)"
        f" from {plan})",
    )
    if everything:
        con.execute(
            f"insert into {table} ({cols}) select {cols} from {read_files(uniform)}",
            {"files": files},
        )
        return
    con.execute(
        f"""
        insert into {table} ({cols})
        select {column_list(table, "a.")}
        from {read_files(uniform, ", file_row_number = true")} as a
        join {plan} as p on p.file_index = a.file_index
            and p.file_row_number = a.file_row_number
        where p.action <> 'skip'
        """,
        {"files": files},
    )


# --- snapshot tables -------------------------------------------------------------------------


def newest_snapshot(new_files: Sequence[str], loaded_files: Sequence[str]) -> str | None:
    """The new snapshot file to load, or None when no new file is newer than the loaded ones.

    Files are compared by their path relative to the lake root (one folder per table, the
    file named by the run's compact ``synced_at``, fixed width, so name order is time order).
    A file re-written at the path of the loaded snapshot is newer.
    """
    if not new_files:
        return None
    candidate = max(new_files)
    if loaded_files and candidate < max(loaded_files):
        return None
    return candidate


def replace_snapshot(
    con: duckdb.DuckDBPyConnection, table: str, snapshot: str | None
) -> TableCounts:
    """Make ``table`` hold exactly the rows of one snapshot file (None: leave it as it is)."""
    if snapshot is None:
        return TableCounts()
    stage = f"stage_{table}"
    con.execute(
        f"create or replace temp table {stage} as select {column_list(table)}"
        f" from {scan_with_filename(table)}"
        f" qualify row_number() over (partition by id order by coalesce(updated_at, {EPOCH}) desc,"
        f" coalesce(synced_at, {EPOCH}) desc) = 1",
        {"files": [snapshot]},
    )
    rows = con.execute(
        f"""
        select
            count(*) filter (where t.id is null),
            count(*) filter (where s.id is not null and t.id is not null
                and coalesce(s.updated_at, {EPOCH}) <> coalesce(t.updated_at, {EPOCH})),
            count(*) filter (where s.id is not null and t.id is not null
                and coalesce(s.updated_at, {EPOCH}) = coalesce(t.updated_at, {EPOCH})),
            count(*) filter (where s.id is null)
        from {stage} as s full join (select id, updated_at from {table}) as t on t.id = s.id
        """
    ).fetchall()
    inserted, updated, unchanged, deleted = (int(n) for n in rows[0])
    con.execute(f"delete from {table}")
    con.execute(f"insert into {table} ({column_list(table)}) select * from {stage}")
    con.execute(f"drop table {stage}")
    return TableCounts(inserted=inserted, updated=updated, unchanged=unchanged, deleted=deleted)


# --- bot schemas -----------------------------------------------------------------------------

FIELDS = "intake_bot_fields"


def merge_bot_fields(
    con: duckdb.DuckDBPyConnection, files: Sequence[str], load_id: int
) -> TableCounts:
    """Replace each staged bot's schema items when the staged bot version is newer or equal."""
    if not files:
        return TableCounts()
    stage = _stage_newest_schemas(con, files)
    plan = _plan_fields(con, stage)
    _keep_replaced_schemas(con, plan, load_id)
    deleted = _replace_fields(con, stage, plan)
    counts = action_counts(con, plan, "staged_rows")
    con.execute(f"drop table {stage}")
    con.execute(f"drop table {plan}")
    updated = counts.get("update", 0)
    return TableCounts(
        inserted=counts.get("insert", 0),
        updated=updated,
        unchanged=counts.get("refresh", 0) + counts.get("skip", 0),
        deleted=max(0, deleted - updated - counts.get("refresh", 0)),
    )


def _stage_newest_schemas(con: duckdb.DuckDBPyConnection, files: Sequence[str]) -> str:
    """A temp table of the schema items of the newest staged version of each bot."""
    # One file holds one bot version's whole schema: pick the newest version's file per bot.
    con.execute(
        f"""
        create or replace temp table stage_fields as
        with f as {scan_with_filename(FIELDS)},
        pick as (
            select intake_bot_id,
                arg_max(filename, (coalesce(bot_updated_at, {EPOCH}), filename)) as filename
            from f group by intake_bot_id
        )
        select {column_list(FIELDS, "f.")}
        from f join pick on pick.intake_bot_id = f.intake_bot_id and pick.filename = f.filename
        """,
        {"files": list(files)},
    )
    return "stage_fields"


def _plan_fields(con: duckdb.DuckDBPyConnection, stage: str) -> str:
    """A temp table of (intake_bot_id, staged_rows, action): each staged bot against its stored
    schema's version."""
    con.execute(
        f"""
        create or replace temp table plan_fields as
        with staged as (
            select intake_bot_id, max(coalesce(bot_updated_at, {EPOCH})) as version,
                count(*) as staged_rows
            from {stage} group by intake_bot_id
        ),
        stored as (
            select intake_bot_id, max(coalesce(bot_updated_at, {EPOCH})) as version
            from {FIELDS}
            where intake_bot_id in (select intake_bot_id from staged)
            group by intake_bot_id
        )
        select staged.intake_bot_id, staged.staged_rows,
            case
                when stored.intake_bot_id is null then 'insert'
                when staged.version > stored.version then 'update'
                when staged.version = stored.version then 'refresh'
                else 'skip'
            end as action
        from staged left join stored on stored.intake_bot_id = staged.intake_bot_id
        """
    )
    return "plan_fields"


def _keep_replaced_schemas(con: duckdb.DuckDBPyConnection, plan: str, load_id: int) -> None:
    """Keep the schema a newer version replaces, so the drift check can compare the two."""
    con.execute(
        "delete from intake_bot_fields_previous where intake_bot_id in"
        f" (select intake_bot_id from {plan} where action = 'update')"
    )
    cols = column_list(FIELDS)
    con.execute(
        f"insert into intake_bot_fields_previous ({cols}, replaced_in_load)"
        f" select {cols}, ? from {FIELDS}"
        f" where intake_bot_id in (select intake_bot_id from {plan} where action = 'update')",
        [load_id],
    )


def _replace_fields(con: duckdb.DuckDBPyConnection, stage: str, plan: str) -> int:
    """Swap in the staged schemas the plan applies; returns how many stored items went."""
    before = scalar(con, f"select count(*) from {FIELDS}")
    con.execute(
        f"delete from {FIELDS} where intake_bot_id in"
        f" (select intake_bot_id from {plan} where action in ('update', 'refresh'))"
    )
    deleted = before - scalar(con, f"select count(*) from {FIELDS}")
    con.execute(
        f"insert into {FIELDS} ({column_list(FIELDS)}) select {column_list(FIELDS, 's.')}"
        f" from {stage} as s join {plan} as p on p.intake_bot_id = s.intake_bot_id"
        " where p.action <> 'skip'"
    )
    return deleted
