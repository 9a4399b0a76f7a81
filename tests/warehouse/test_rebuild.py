"""Rebuilding from the lake alone gives the incremental warehouse, row for row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import load_warehouse, rebuild_warehouse
from tests.support.lake import (
    ALL_FIELD_TYPES,
    bot_row,
    field_rows,
    submission_row,
    webhook_row,
    write_lake,
    write_submissions,
)
from tests.support.warehouse import DATA_TABLES, fetch, table_rows


def _write_state(paths: DataPaths) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(paths.state_db)
    con.execute(
        "create table if not exists sync_state (stream text, intake_bot_id text,"
        " resume_point text, pages integer, updated_at text)"
    )
    con.execute("insert into sync_state values ('submissions', 'b1', 's9', 3, '2026-03-01')")
    con.commit()
    con.close()


def test_rebuild_equals_the_incremental_result(paths: DataPaths) -> None:
    lake = paths.parquet
    write_lake(lake, "intake_bots", [bot_row("b1", "Sales", 0), bot_row("b2", "Sales", 0)])
    write_lake(lake, "intake_bot_fields", field_rows("b1", 0, ALL_FIELD_TYPES), bot_id="b1")
    write_lake(lake, "webhooks", [webhook_row("w1", 0), webhook_row("w2", 0)], stem="T0900Z")
    page = [
        submission_row(f"s{i}", "b1", i, {"full_name": f"n{i}", "topics": ["a", "b"]})
        for i in range(5)
    ]
    write_submissions(lake, page, bot_id="b1", stem="p0")
    load_warehouse(paths)

    # Later syncs: updates, a schema change, an out-of-order old page, a re-run page.
    write_lake(lake, "intake_bots", [bot_row("b1", "Sales", 30, submission_count=6)], stem="p1")
    write_lake(
        lake,
        "intake_bot_fields",
        field_rows("b1", 30, [*ALL_FIELD_TYPES, ("score", "number")]),
        bot_id="b1",
        stem="detail-30",
    )
    newer = [submission_row("s1", "b1", 40, {"full_name": "changed"}, status="IN_PROGRESS")]
    newer.append(submission_row("s5", "b1", 41, {"score": 3}))
    write_submissions(lake, newer, bot_id="b1", stem="p1")
    _write_state(paths)
    load_warehouse(paths)
    older = [submission_row("s2", "b1", 1, {"full_name": "older"})]
    write_submissions(lake, older, bot_id="b1", stem="p-backfill")
    write_lake(lake, "webhooks", [webhook_row("w1", 9, "https://new.test")], stem="T1000Z")
    write_lake(lake, "webhooks", [webhook_row("w2", 0)], stem="T0800Z")  # an old snapshot, late
    load_warehouse(paths)

    incremental = {table: table_rows(paths, table) for table in DATA_TABLES}
    views = fetch(paths, "select view_name, definition from wide_views order by all")
    wide = fetch(paths, "select * from bots.sales order by all")
    assert len(incremental["submissions"]) == 6
    assert [row[:2] for row in incremental["webhooks"]] == [("w1", "https://new.test")]
    assert incremental["sync_state"]

    report = rebuild_warehouse(paths)
    assert report.mode == "rebuild"
    assert {table: table_rows(paths, table) for table in DATA_TABLES} == incremental
    assert fetch(paths, "select view_name, definition from wide_views order by all") == views
    assert fetch(paths, "select * from bots.sales order by all") == wide
    # After a rebuild, incremental loads carry on from the rebuilt ledger.
    assert sum(load_warehouse(paths).files_loaded.values()) == 0


def _three_bot_lake(paths: DataPaths) -> None:
    lake = paths.parquet
    write_lake(lake, "intake_bots", [bot_row(b, b.upper(), 0) for b in ("b1", "b2", "b3")])
    for b in ("b1", "b2", "b3"):
        write_lake(lake, "intake_bot_fields", field_rows(b, 0, ALL_FIELD_TYPES), bot_id=b)
        first = [submission_row(f"{b}s{i}", b, i, {"full_name": f"n{i}"}) for i in range(4)]
        write_submissions(lake, first, bot_id=b, stem="p0")
        # A re-sync of two of them, one newer and one the same version, in a later page.
        again = [
            submission_row(f"{b}s1", b, 20, {"topics": ["a", "b"]}),
            submission_row(f"{b}s2", b, 2, {"full_name": "n2"}, synced=30),
        ]
        write_submissions(lake, again, bot_id=b, stem="p1")


def test_merging_bot_by_bot_gives_the_rows_and_counts_of_one_merge(tmp_path: Path) -> None:
    one, batched = DataPaths(tmp_path / "one"), DataPaths(tmp_path / "batched")
    _three_bot_lake(one)
    _three_bot_lake(batched)
    whole = load_warehouse(one)
    in_batches = load_warehouse(batched, batch_rows=1)  # one bot folder per batch
    assert in_batches.tables == whole.tables
    for table in (*DATA_TABLES, "load_changed_submissions", "answers_without_submission"):
        assert table_rows(batched, table) == table_rows(one, table)
    assert table_rows(one, "submission_answers")
