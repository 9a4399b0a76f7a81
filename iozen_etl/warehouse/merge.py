"""Newest-wins merge of new lake files into the warehouse tables (inside the caller's transaction).

Rules, the same for an incremental load and a rebuild so that both give the same rows:

* ``intake_bots``, ``submissions``, ``webhooks`` merge by ``id``. A row is replaced only by a
  version with a newer ``updated_at``, or an equal one synced no earlier (``synced_at``), so
  retries, overlapping pages, out-of-order loads and backfills never move a row backwards.
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
KEYED_TABLES = ("intake_bots", "submissions", "webhooks")


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


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> int:
    """The first column of the first row as an int (0 for NULL), with the result drained.

    duckdb 2.0 keeps a half-read result open and refuses the next statement, so never fetchone.
    """
    rows = con.execute(sql, list(params)).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _action_counts(con: duckdb.DuckDBPyConnection, plan: str, weight: str = "1") -> dict[str, int]:
    rows = con.execute(f"select action, sum({weight}) from {plan} group by action").fetchall()
    return {str(action): int(total) for action, total in rows}


def merge_keyed(con: duckdb.DuckDBPyConnection, table: str, files: Sequence[str]) -> TableCounts:
    """Merge one of the id-keyed tables.

    Leaves ``plan_<table>`` (id, version, action) for the caller: for applied rows (insert,
    update, refresh) ``version`` is the row's stored ``updated_at`` after the merge.
    An equal version is re-applied (a later sync of the same version) but counted unchanged:
    the API bumps ``updated_at`` whenever a row changes.
    """
    plan = f"plan_{table}"
    if not files:
        con.execute(
            f"create or replace temp table {plan} (id varchar, version timestamptz, action varchar)"
        )
        return TableCounts()
    stage = f"stage_{table}"
    con.execute(
        f"create or replace temp table {stage} as select {_column_list(table)} from {_scan(table)}"
        f" qualify row_number() over (partition by id order by coalesce(updated_at, {EPOCH}) desc,"
        f" coalesce(synced_at, {EPOCH}) desc, filename desc) = 1",
        {"files": list(files)},
    )
    version_s = f"coalesce(s.updated_at, {EPOCH})"
    version_t = f"coalesce(t.updated_at, {EPOCH})"
    # Only the key and version columns of the stored table are read (one scan of the id
    # column); rows are then deleted by rowid.
    con.execute(
        f"""
        create or replace temp table {plan} as
        select s.id, {version_s} as version, t.rid,
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
    counts = _action_counts(con, plan)
    if counts.get("update", 0) + counts.get("refresh", 0):
        con.execute(
            f"delete from {table} where rowid in"
            f" (select rid from {plan} where action in ('update', 'refresh'))"
        )
    con.execute(
        f"insert into {table} ({_column_list(table)})"
        f" select {_column_list(table, 's.')} from {stage} as s"
        f" join {plan} as p on p.id = s.id where p.action <> 'skip'"
    )
    con.execute(f"drop table {stage}")
    return TableCounts(
        inserted=counts.get("insert", 0),
        updated=counts.get("update", 0),
        unchanged=counts.get("refresh", 0) + counts.get("skip", 0),
    )


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


def merge_answers(con: duckdb.DuckDBPyConnection, files: Sequence[str]) -> TableCounts:
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
        " filename varchar, n bigint, all_rows bigint)"
    )
    if files:
        # One file holds one version of a submission's answers: choose one file per submission,
        # so the big answer rows are read twice but never sorted or windowed.
        con.execute(
            f"""
            insert into pick_answers
            with per_file as (
                select submission_id, filename,
                    max(coalesce(submission_updated_at, {EPOCH})) as version, count(*) as n
                from read_parquet($files, filename = true, union_by_name = true,
                    hive_partitioning = false)
                group by submission_id, filename
            )
            select submission_id, max(version),
                arg_max(filename, (version, filename)), arg_max(n, (version, filename)), sum(n)
            from per_file group by submission_id
            """,
            {"files": list(files)},
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
        select p.submission_id, p.filename, p.n, p.all_rows,
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
        con.execute(
            f"""
            insert into {table} ({cols})
            select {_column_list(table, "a.")}
            from {_scan(table)} as a
            join plan_answers as p on p.submission_id = a.submission_id
                and p.filename = a.filename
            where p.action <> 'skip'
            """,
            {"files": list(files)},
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
