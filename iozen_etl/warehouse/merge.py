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
  are dropped: a newer version with fewer answers leaves no stale ones behind.

Within one load, several files may hold the same key; the newest version wins, then the latest
sync, then the greatest file path, so the choice never depends on the order files were listed.
A load reads only the new files, plus one scan of the key and version columns of
``submissions`` and of ``submission_answers.submission_id``; it rewrites only the rows that
change (deleted by rowid, inserted from the staged files), so its cost follows what is new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from iozen_etl.sync.schemas import LAKE_TABLES

EPOCH = "timestamptz '1970-01-01 00:00:00+00'"
KEYED_TABLES = ("intake_bots", "submissions")
SNAPSHOT_TABLES = ("webhooks",)


@dataclass(frozen=True)
class TableCounts:
    """What one load did to one table, in rows."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0  # staged rows older than, or at the same version as, the stored ones
    deleted: int = 0  # rows dropped because their bot schema or submission version moved on


def columns(table: str) -> list[str]:
    return [field.name for field in LAKE_TABLES[table]]


def _column_list(table: str, prefix: str = "") -> str:
    return ", ".join(f"{prefix}{name}" for name in columns(table))


def _scan(table: str) -> str:
    """A read of the given files (bound as parameter ``$files``) with the table's columns."""
    return (
        f"(select {_column_list(table)}, filename from read_parquet($files, union_by_name = true,"
        " filename = true, hive_partitioning = false))"
    )


def _read(uniform: bool, options: str = "") -> str:
    """``read_parquet`` over the files bound as ``$files``, columns matched by name.

    ``uniform``: every file has the same column names and types (the load read each footer).
    Then DuckDB reads each file as the first; otherwise ``union_by_name`` also unifies the
    types (an int32 in one file and an int64 in another), which costs about 0.15 ms a file.
    """
    union = "false" if uniform else "true"
    return f"read_parquet($files, union_by_name = {union}, hive_partitioning = false{options})"


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> int:
    """The first column of the first row as an int (0 for NULL), with the result drained.

    duckdb 2.0 keeps a half-read result open and refuses the next statement, so never fetchone.
    """
    rows = con.execute(sql, list(params)).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _action_counts(con: duckdb.DuckDBPyConnection, plan: str, weight: str = "1") -> dict[str, int]:
    rows = con.execute(f"select action, sum({weight}) from {plan} group by action").fetchall()
    return {str(action): int(total) for action, total in rows}


def merge_keyed(
    con: duckdb.DuckDBPyConnection, table: str, files: Sequence[str], *, uniform: bool = False
) -> TableCounts:
    """Merge one of the id-keyed tables.

    Leaves ``plan_<table>`` (id, version, action) for the caller: for applied rows (insert,
    update, refresh) ``version`` is the row's stored ``updated_at`` after the merge.
    An equal version is re-applied (a later sync of the same version) but counted unchanged:
    the API bumps ``updated_at`` whenever a row changes.
    """
    plan = f"plan_{table}"
    if not files:
        con.execute(
            f"create or replace temp table {plan} (id varchar, version timestamptz, rid bigint,"
            " file_index bigint, file_row_number bigint, staged_rows bigint, action varchar)"
        )
        return TableCounts()
    stage = f"stage_{table}"
    # Sorted, so that the index of a file in the list orders files as their names do.
    files = sorted(files)
    # Only the key and version columns are staged: the wide rows (the answers JSON) are read
    # once more by the insert, straight from the files, rather than copied and windowed.
    con.execute(
        f"""
        create or replace temp table {stage} as
        select id, updated_at, synced_at, file_index, file_row_number,
            count(*) over () as staged_rows
        from {_read(uniform, ", file_row_number = true")}
        qualify row_number() over (partition by id order by coalesce(updated_at, {EPOCH}) desc,
            coalesce(synced_at, {EPOCH}) desc, file_index desc, file_row_number desc) = 1
        """,
        {"files": files},
    )
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
    con.execute(f"drop table {stage}")
    counts = _action_counts(con, plan)
    if counts.get("update", 0) + counts.get("refresh", 0):
        con.execute(
            f"delete from {table} where rowid in"
            f" (select rid from {plan} where action in ('update', 'refresh'))"
        )
    cols = _column_list(table)
    # Usually (new pages, a rebuild) every staged row is applied: no id is staged twice and
    # none is skipped, so the rows go in without the join.
    everything = not scalar(
        con,
        f"select count(*) from {plan} where action = 'skip' or staged_rows <> (select count(*)"
        f" from {plan})",
    )
    if everything:
        con.execute(
            f"insert into {table} ({cols}) select {cols} from {_read(uniform)}",
            {"files": files},
        )
    else:
        con.execute(
            f"""
            insert into {table} ({cols})
            select {_column_list(table, "a.")}
            from {_read(uniform, ", file_row_number = true")} as a
            join {plan} as p on p.file_index = a.file_index
                and p.file_row_number = a.file_row_number
            where p.action <> 'skip'
            """,
            {"files": files},
        )
    return TableCounts(
        inserted=counts.get("insert", 0),
        updated=counts.get("update", 0),
        unchanged=counts.get("refresh", 0) + counts.get("skip", 0),
    )


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
        f"create or replace temp table {stage} as select {_column_list(table)} from {_scan(table)}"
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
    con.execute(f"insert into {table} ({_column_list(table)}) select * from {stage}")
    con.execute(f"drop table {stage}")
    return TableCounts(inserted=inserted, updated=updated, unchanged=unchanged, deleted=deleted)


def merge_bot_fields(
    con: duckdb.DuckDBPyConnection, files: Sequence[str], load_id: int
) -> TableCounts:
    """Replace each staged bot's schema items when the staged bot version is newer or equal."""
    if not files:
        return TableCounts()
    table = "intake_bot_fields"
    cols = _column_list(table)
    # One file holds one bot version's whole schema: pick the newest version's file per bot.
    con.execute(
        f"""
        create or replace temp table stage_fields as
        with f as {_scan(table)},
        pick as (
            select intake_bot_id,
                arg_max(filename, (coalesce(bot_updated_at, {EPOCH}), filename)) as filename
            from f group by intake_bot_id
        )
        select {_column_list(table, "f.")}
        from f join pick on pick.intake_bot_id = f.intake_bot_id and pick.filename = f.filename
        """,
        {"files": list(files)},
    )
    con.execute(
        f"""
        create or replace temp table plan_fields as
        with staged as (
            select intake_bot_id, max(coalesce(bot_updated_at, {EPOCH})) as version,
                count(*) as staged_rows
            from stage_fields group by intake_bot_id
        ),
        stored as (
            select intake_bot_id, max(coalesce(bot_updated_at, {EPOCH})) as version
            from {table}
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
    # Keep the schema a newer version replaces, so the drift check can compare the two.
    con.execute(
        "delete from intake_bot_fields_previous where intake_bot_id in"
        " (select intake_bot_id from plan_fields where action = 'update')"
    )
    con.execute(
        f"insert into intake_bot_fields_previous ({cols}, replaced_in_load)"
        f" select {cols}, ? from {table}"
        " where intake_bot_id in (select intake_bot_id from plan_fields where action = 'update')",
        [load_id],
    )
    before = scalar(con, f"select count(*) from {table}")
    con.execute(
        f"delete from {table} where intake_bot_id in"
        " (select intake_bot_id from plan_fields where action in ('update', 'refresh'))"
    )
    deleted = before - scalar(con, f"select count(*) from {table}")
    con.execute(
        f"insert into {table} ({cols}) select {_column_list(table, 's.')} from stage_fields as s"
        " join plan_fields as p on p.intake_bot_id = s.intake_bot_id where p.action <> 'skip'"
    )
    counts = _action_counts(con, "plan_fields", "staged_rows")
    con.execute("drop table stage_fields")
    updated = counts.get("update", 0)
    return TableCounts(
        inserted=counts.get("insert", 0),
        updated=updated,
        unchanged=counts.get("refresh", 0) + counts.get("skip", 0),
        deleted=max(0, deleted - updated - counts.get("refresh", 0)),
    )


def merge_answers(
    con: duckdb.DuckDBPyConnection, files: Sequence[str], *, uniform: bool = False
) -> TableCounts:
    """Replace answers per submission; then drop answers older than their stored submission.

    Expects ``plan_submissions`` from :func:`merge_keyed` (the submissions this load touched);
    leaves ``answers_changed`` (submission ids whose answers were inserted or replaced).
    The stored answers are read once, by their submission id column only.
    """
    table = "submission_answers"
    cols = _column_list(table)
    con.execute("create or replace temp table answers_changed (submission_id varchar)")
    con.execute(
        "create or replace temp table pick_answers (submission_id varchar, version timestamptz,"
        " file_index bigint, n bigint, all_rows bigint)"
    )
    # Sorted, so that the index of a file in the list orders files as their names do.
    files = sorted(files)
    if files:
        # One file holds one version of a submission's answers: choose one file per submission,
        # so the big answer rows are read twice but never sorted or windowed. Files are told
        # apart by their index in the list: grouping by the long file name costs memory.
        con.execute(
            f"""
            insert into pick_answers
            with per_file as (
                select submission_id, file_index,
                    max(coalesce(submission_updated_at, {EPOCH})) as version, count(*) as n
                from {_read(uniform)}
                group by submission_id, file_index
            )
            select submission_id, max(version),
                arg_max(file_index, (version, file_index)), arg_max(n, (version, file_index)),
                sum(n)
            from per_file group by submission_id
            """,
            {"files": files},
        )
    # The stored version of each submission concerned: from this load's plan when it was
    # applied, else (a late or orphan answers file) from the table.
    con.execute(
        """
        create or replace temp table submission_versions as
        select id, version from plan_submissions where action <> 'skip'
        """
    )
    uncovered = scalar(
        con,
        "select count(*) from pick_answers where submission_id not in"
        " (select id from submission_versions)",
    )
    if uncovered:
        con.execute(
            f"""
            insert into submission_versions
            select id, coalesce(updated_at, {EPOCH}) from submissions
            where id in (
                select submission_id from pick_answers
                where submission_id not in (select id from submission_versions)
            )
            """
        )
    # Submissions that can have stored answers: those stored before this load, and those
    # whose answers came before them. A load of only new submissions skips the big scan.
    con.execute(
        """
        create or replace temp table answer_candidates as
        select id from submission_versions
        where id not in (select id from plan_submissions where action = 'insert')
        union
        select submission_id from answers_without_submission
        where submission_id in (
            select submission_id from pick_answers union select id from submission_versions
        )
        """
    )
    con.execute(
        "create or replace temp table stored_answers"
        " (rid bigint, submission_id varchar, version timestamptz)"
    )
    if scalar(con, "select count(*) from answer_candidates"):
        con.execute(
            f"""
            insert into stored_answers
            select rowid, submission_id, coalesce(submission_updated_at, {EPOCH})
            from {table}
            where submission_id in (select id from answer_candidates)
            """
        )
    con.execute(
        """
        create or replace temp table plan_answers as
        with stored as (
            select submission_id, max(version) as version from stored_answers group by all
        )
        select p.submission_id, p.file_index, p.n, p.all_rows,
            case
                when s.version is not null and p.version < s.version then 'skip'
                when stored.submission_id is null then 'insert'
                when p.version > stored.version then 'update'
                when p.version = stored.version then 'refresh'
                else 'skip'
            end as action
        from pick_answers as p
        left join submission_versions as s on s.id = p.submission_id
        left join stored on stored.submission_id = p.submission_id
        """
    )
    # Replaced answers, and answers older than their submission's stored version (a newer
    # version without its answers yet must not keep the old ones).
    con.execute(
        """
        create or replace temp table answers_to_delete as
        select a.rid, p.action is not null as replaced
        from stored_answers as a
        left join plan_answers as p
            on p.submission_id = a.submission_id and p.action in ('update', 'refresh')
        left join submission_versions as s on s.id = a.submission_id
        where p.action is not null or a.version < s.version
        """
    )
    removed = scalar(con, "select count(*) from answers_to_delete")
    replaced = scalar(con, "select count(*) from answers_to_delete where replaced")
    if removed:
        con.execute(f"delete from {table} where rowid in (select rid from answers_to_delete)")
    if files:
        # Usually (new pages, a rebuild) every staged row is applied: each submission's answers
        # sit in one file and none is skipped, so the rows go in without the join.
        everything = not scalar(
            con, "select count(*) from plan_answers where action = 'skip' or all_rows <> n"
        )
        scan = f"(select {cols}, file_index from {_read(uniform)})"
        if everything:
            con.execute(f"insert into {table} ({cols}) select {cols} from {scan}", {"files": files})
        else:
            con.execute(
                f"""
                insert into {table} ({cols})
                select {_column_list(table, "a.")}
                from {scan} as a
                join plan_answers as p on p.submission_id = a.submission_id
                    and p.file_index = a.file_index
                where p.action <> 'skip'
                """,
                {"files": files},
            )
    con.execute(
        "delete from answers_without_submission"
        " where submission_id in (select id from plan_submissions where action = 'insert')"
    )
    con.execute(
        """
        insert into answers_without_submission
        select distinct submission_id from plan_answers
        where action <> 'skip'
            and submission_id not in (select id from submission_versions)
            and submission_id not in (select submission_id from answers_without_submission)
        """
    )
    counts = _action_counts(con, "plan_answers", "n")
    # Staged rows not applied: superseded copies in other files, and skipped submissions.
    counts["skip"] = scalar(
        con,
        "select coalesce(sum(case when action = 'skip' then all_rows else all_rows - n end),"
        " 0) from plan_answers",
    )
    con.execute(
        "insert into answers_changed select submission_id from plan_answers"
        " where action in ('insert', 'update')"
    )
    for temp in (
        "pick_answers",
        "plan_answers",
        "answer_candidates",
        "stored_answers",
        "answers_to_delete",
    ):
        con.execute(f"drop table {temp}")
    con.execute("drop table submission_versions")
    updated = counts.get("update", 0)
    return TableCounts(
        inserted=counts.get("insert", 0),
        updated=updated,
        unchanged=counts.get("refresh", 0) + counts.get("skip", 0),
        deleted=max(0, replaced - updated - counts.get("refresh", 0)) + (removed - replaced),
    )
