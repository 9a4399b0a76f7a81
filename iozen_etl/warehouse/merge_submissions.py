"""Newest-wins merge of submissions and their answers, batch after batch (see ``merge.py``).

``submission_answers`` are replaced per submission when a newer-or-equal submission version
(``submission_updated_at``) arrives, and answers older than their submission's stored version
are dropped: a newer version with fewer answers leaves no stale ones behind. Answers that come
before their submission are remembered in ``answers_without_submission``. The ids whose row or
answers changed end in ``load_changed_submissions``, for the checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from iozen_etl.warehouse.merge import (
    EPOCH,
    MergePlan,
    TableCounts,
    action_counts,
    column_list,
    merge_keyed,
    read_files,
    scalar,
)

ANSWERS = "submission_answers"


@dataclass(frozen=True)
class SubmissionBatch:
    """The submission and answer files of some whole bot folders, merged together.

    ``*_uniform``: those files all have one layout (see :func:`merge.read_files`).
    """

    submissions: Sequence[str]
    answers: Sequence[str]
    submissions_uniform: bool = False
    answers_uniform: bool = False


def merge_submissions(
    con: duckdb.DuckDBPyConnection, batches: Sequence[SubmissionBatch]
) -> tuple[TableCounts, TableCounts]:
    """Merge each batch's submissions, then its answers; returns the counts of both tables.

    Replaces ``load_changed_submissions`` with the ids whose row or answers this load changed.
    """
    submissions = answers = TableCounts()
    changed = "changed_submissions"
    con.execute(f"create or replace temp table {changed} (submission_id varchar)")
    for batch in batches or [SubmissionBatch((), ())]:
        with (
            merge_keyed(
                con, "submissions", batch.submissions, uniform=batch.submissions_uniform
            ) as submitted,
            # After submissions: answers are accepted against the stored submission versions.
            merge_answers(con, batch.answers, submitted, uniform=batch.answers_uniform) as answered,
        ):
            submissions += submitted.counts
            answers += answered.counts
            con.execute(
                f"insert into {changed}"
                f" select id from {submitted.table} where action in ('insert', 'update')"
                f" union select submission_id from {answered.table}"
                " where action in ('insert', 'update')"
            )
    # Replaced, not emptied: after a full load it holds a million ids, and deleting them row
    # by row would make the next (small) load pay for the previous one.
    con.execute(
        "create or replace table load_changed_submissions as"
        f" select distinct submission_id from {changed}"
    )
    con.execute(f"drop table {changed}")
    return submissions, answers


def merge_answers(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[str],
    submissions: MergePlan,
    *,
    uniform: bool = False,
) -> MergePlan:
    """Replace answers per submission; then drop answers older than their stored submission.

    ``submissions`` is the plan of this batch's :func:`merge.merge_keyed` of submissions. The
    returned plan's table holds (submission_id, file_index, n, all_rows, action): the file
    chosen for each staged submission, its rows there and in all files. The stored answers are
    read once, by their submission id column only.
    """
    # Sorted, so that the index of a file in the list orders files as their names do.
    files = sorted(files)
    picks = _pick_answer_files(con, files, uniform)
    versions = _submission_versions(con, submissions, picks)
    stored = _stored_answers(con, submissions, versions, picks)
    plan = _plan_answers(con, picks, versions, stored)
    con.execute(f"drop table {picks}")
    removed, replaced = _delete_stale_answers(con, stored, plan, versions)
    con.execute(f"drop table {stored}")
    if files:
        _insert_answers(con, files, plan, uniform)
    _track_answers_without_submission(con, submissions, plan, versions)
    con.execute(f"drop table {versions}")
    return MergePlan(con, plan, _answer_counts(con, plan, removed, replaced))


def _pick_answer_files(con: duckdb.DuckDBPyConnection, files: list[str], uniform: bool) -> str:
    """A temp table of (submission_id, version, file_index, n, all_rows): the file holding the
    newest version of each staged submission's answers, its rows there and in all files."""
    picks = "pick_answers"
    con.execute(
        f"create or replace temp table {picks} (submission_id varchar, version timestamptz,"
        " file_index bigint, n bigint, all_rows bigint)"
    )
    if not files:
        return picks
    # One file holds one version of a submission's answers: choose one file per submission,
    # so the big answer rows are read twice but never sorted or windowed. Files are told
    # apart by their index in the list: grouping by the long file name costs memory.
    con.execute(
        f"""
        insert into {picks}
        with per_file as (
            select submission_id, file_index,
                max(coalesce(submission_updated_at, {EPOCH})) as version, count(*) as n
            from {read_files(uniform)}
            group by submission_id, file_index
        )
        select submission_id, max(version),
            arg_max(file_index, (version, file_index)), arg_max(n, (version, file_index)),
            sum(n)
        from per_file group by submission_id
        """,
        {"files": files},
    )
    return picks


def _submission_versions(con: duckdb.DuckDBPyConnection, submissions: MergePlan, picks: str) -> str:
    """A temp table of (id, version): the stored version of each submission concerned.

    From this batch's plan when it was applied, else (a late or orphan answers file) from the
    table.
    """
    versions = "submission_versions"
    con.execute(
        f"""
        create or replace temp table {versions} as
        select id, version from {submissions.table} where action <> 'skip'
        """
    )
    uncovered = scalar(
        con,
        f"select count(*) from {picks} where submission_id not in (select id from {versions})",
    )
    if uncovered:
        con.execute(
            f"""
            insert into {versions}
            select id, coalesce(updated_at, {EPOCH}) from submissions
            where id in (
                select submission_id from {picks}
                where submission_id not in (select id from {versions})
            )
            """
        )
    return versions


def _stored_answers(
    con: duckdb.DuckDBPyConnection, submissions: MergePlan, versions: str, picks: str
) -> str:
    """A temp table of (rid, submission_id, version): the stored answers that may be replaced
    or dropped."""
    # Submissions that can have stored answers: those stored before this load, and those
    # whose answers came before them. A load of only new submissions skips the big scan.
    con.execute(
        f"""
        create or replace temp table answer_candidates as
        select id from {versions}
        where id not in (select id from {submissions.table} where action = 'insert')
        union
        select submission_id from answers_without_submission
        where submission_id in (
            select submission_id from {picks} union select id from {versions}
        )
        """
    )
    stored = "stored_answers"
    con.execute(
        f"create or replace temp table {stored}"
        " (rid bigint, submission_id varchar, version timestamptz)"
    )
    if scalar(con, "select count(*) from answer_candidates"):
        con.execute(
            f"""
            insert into {stored}
            select rowid, submission_id, coalesce(submission_updated_at, {EPOCH})
            from {ANSWERS}
            where submission_id in (select id from answer_candidates)
            """
        )
    con.execute("drop table answer_candidates")
    return stored


def _plan_answers(con: duckdb.DuckDBPyConnection, picks: str, versions: str, stored: str) -> str:
    """The plan's temp table: each staged submission's answers against the stored ones."""
    plan = "plan_answers"
    con.execute(
        f"""
        create or replace temp table {plan} as
        with stored as (
            select submission_id, max(version) as version from {stored} group by all
        )
        select p.submission_id, p.file_index, p.n, p.all_rows,
            case
                when s.version is not null and p.version < s.version then 'skip'
                when stored.submission_id is null then 'insert'
                when p.version > stored.version then 'update'
                when p.version = stored.version then 'refresh'
                else 'skip'
            end as action
        from {picks} as p
        left join {versions} as s on s.id = p.submission_id
        left join stored on stored.submission_id = p.submission_id
        """
    )
    return plan


def _delete_stale_answers(
    con: duckdb.DuckDBPyConnection, stored: str, plan: str, versions: str
) -> tuple[int, int]:
    """Delete replaced answers, and answers older than their submission's stored version (a
    newer version without its answers yet must not keep the old ones).

    Returns (answers deleted, of which replaced).
    """
    con.execute(
        f"""
        create or replace temp table answers_to_delete as
        select a.rid, p.action is not null as replaced
        from {stored} as a
        left join {plan} as p
            on p.submission_id = a.submission_id and p.action in ('update', 'refresh')
        left join {versions} as s on s.id = a.submission_id
        where p.action is not null or a.version < s.version
        """
    )
    removed = scalar(con, "select count(*) from answers_to_delete")
    replaced = scalar(con, "select count(*) from answers_to_delete where replaced")
    if removed:
        con.execute(f"delete from {ANSWERS} where rowid in (select rid from answers_to_delete)")
    con.execute("drop table answers_to_delete")
    return removed, replaced


def _insert_answers(
    con: duckdb.DuckDBPyConnection, files: list[str], plan: str, uniform: bool
) -> None:
    cols = column_list(ANSWERS)
    # Usually (new pages, a rebuild) every staged row is applied: each submission's answers
    # sit in one file and none is skipped, so the rows go in without the join.
    everything = not scalar(
        con, f"select count(*) from {plan} where action = 'skip' or all_rows <> n"
    )
    scan = f"(select {cols}, file_index from {read_files(uniform)})"
    if everything:
        con.execute(f"insert into {ANSWERS} ({cols}) select {cols} from {scan}", {"files": files})
        return
    con.execute(
        f"""
        insert into {ANSWERS} ({cols})
        select {column_list(ANSWERS, "a.")}
        from {scan} as a
        join {plan} as p on p.submission_id = a.submission_id
            and p.file_index = a.file_index
        where p.action <> 'skip'
        """,
        {"files": files},
    )


def _track_answers_without_submission(
    con: duckdb.DuckDBPyConnection, submissions: MergePlan, plan: str, versions: str
) -> None:
    """Forget the submissions that arrived; remember applied answers whose submission has not."""
    con.execute(
        "delete from answers_without_submission"
        f" where submission_id in (select id from {submissions.table} where action = 'insert')"
    )
    con.execute(
        f"""
        insert into answers_without_submission
        select distinct submission_id from {plan}
        where action <> 'skip'
            and submission_id not in (select id from {versions})
            and submission_id not in (select submission_id from answers_without_submission)
        """
    )


def _answer_counts(
    con: duckdb.DuckDBPyConnection, plan: str, removed: int, replaced: int
) -> TableCounts:
    counts = action_counts(con, plan, "n")
    # Staged rows not applied: superseded copies in other files, and skipped submissions.
    skipped = scalar(
        con,
        "select coalesce(sum(case when action = 'skip' then all_rows else all_rows - n end),"
        f" 0) from {plan}",
    )
    updated = counts.get("update", 0)
    refreshed = counts.get("refresh", 0)
    return TableCounts(
        inserted=counts.get("insert", 0),
        updated=updated,
        unchanged=refreshed + skipped,
        deleted=max(0, replaced - updated - refreshed) + (removed - replaced),
    )
