"""The newest-wins merge: updates, out-of-order and repeated loads, replaced files, bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings, strategies as st

from iozen_etl.settings import DataPaths
from iozen_etl.sync.schemas import LAKE_TABLES
from iozen_etl.warehouse import TableCounts, files_owed, load_warehouse, rebuild_warehouse
from tests.support.lake import (
    answer_rows,
    bot_row,
    field_rows,
    submission_row,
    webhook_row,
    write_lake,
    write_submissions,
)
from tests.support.warehouse import fetch, table_rows


def _one_bot(paths: DataPaths, updated: float = 0, stem: str = "p0") -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "Intake", updated)], stem=stem)


def _submissions(paths: DataPaths) -> dict[str, tuple[str, str]]:
    rows = fetch(paths, "select id, status, data from submissions")
    return {str(i): (str(s), str(d)) for i, s, d in rows}


def _answers(paths: DataPaths, submission_id: str) -> dict[str, Any]:
    rows = fetch(
        paths,
        "select field_name, text_value, number_value from submission_answers"
        " where submission_id = ? order by field_name, position",
        [submission_id],
    )
    return {str(f): t if t is not None else n for f, t, n in rows}


def test_newer_versions_replace_and_older_ones_never_move_a_row_back(paths: DataPaths) -> None:
    _one_bot(paths)
    v1 = [
        submission_row("s1", "b1", 10, {"name": "a1"}, status="IN_PROGRESS"),
        submission_row("s2", "b1", 10, {"name": "b1"}),
    ]
    write_submissions(paths.parquet, v1, bot_id="b1", stem="p0")
    first = load_warehouse(paths)
    assert first.tables["submissions"] == TableCounts(inserted=2)

    # s1 completes later: a re-run of the bot writes a newer page.
    v2 = [submission_row("s1", "b1", 20, {"name": "a2"}, status="COMPLETED")]
    write_submissions(paths.parquet, v2, bot_id="b1", stem="p1")
    second = load_warehouse(paths)
    assert second.tables["submissions"] == TableCounts(updated=1)
    assert _submissions(paths)["s1"][0] == "COMPLETED"
    assert _answers(paths, "s1") == {"name": "a2"}

    # A backfill or a late retry brings an older version afterwards: nothing moves back.
    old = [submission_row("s1", "b1", 5, {"name": "a0"}, status="IN_PROGRESS")]
    write_submissions(paths.parquet, old, bot_id="b1", stem="p-old")
    third = load_warehouse(paths)
    assert third.tables["submissions"] == TableCounts(unchanged=1)
    assert third.tables["submission_answers"].inserted == 0
    assert _submissions(paths)["s1"] == ("COMPLETED", json.dumps({"name": "a2"}))
    assert _answers(paths, "s1") == {"name": "a2"}
    assert fetch(paths, "select count(*) from submissions") == [(2,)]


def test_a_repeated_sync_of_the_same_version_is_unchanged(paths: DataPaths) -> None:
    _one_bot(paths)
    page = [submission_row("s1", "b1", 10, {"name": "a"})]
    write_submissions(paths.parquet, page, bot_id="b1", stem="p0")
    load_warehouse(paths)
    resynced = [submission_row("s1", "b1", 10, {"name": "a"}, synced=50)]
    write_submissions(paths.parquet, resynced, bot_id="b1", stem="p0-again")
    report = load_warehouse(paths)
    assert report.tables["submissions"] == TableCounts(unchanged=1)
    assert report.tables["submission_answers"] == TableCounts(unchanged=1)
    assert fetch(paths, "select count(*) from submission_answers") == [(1,)]


def test_nothing_new_loads_nothing(paths: DataPaths) -> None:
    _one_bot(paths)
    load_warehouse(paths)
    again = load_warehouse(paths)
    assert sum(again.files_loaded.values()) == 0
    assert all(c == TableCounts() for c in again.tables.values())
    assert again.published


def test_a_newer_version_with_fewer_answers_leaves_no_stale_answers(paths: DataPaths) -> None:
    _one_bot(paths)
    full = [submission_row("s1", "b1", 10, {"a": "x", "b": "y", "tags": ["p", "q"]})]
    write_submissions(paths.parquet, full, bot_id="b1", stem="p0")
    load_warehouse(paths)
    assert fetch(paths, "select count(*) from submission_answers") == [(4,)]
    fewer = [submission_row("s1", "b1", 20, {"a": "x2"})]
    # Only the submissions file of the newer page has landed so far: the old answers must go.
    write_lake(paths.parquet, "submissions", fewer, bot_id="b1", stem="p1")
    report = load_warehouse(paths)
    assert report.tables["submission_answers"].deleted == 4
    assert fetch(paths, "select count(*) from submission_answers") == [(0,)]
    write_lake(paths.parquet, "submission_answers", answer_rows(fewer), bot_id="b1", stem="p1")
    load_warehouse(paths)
    assert _answers(paths, "s1") == {"a": "x2"}


def test_answers_landing_before_their_submission_are_kept_by_version(paths: DataPaths) -> None:
    _one_bot(paths)
    sub = submission_row("s1", "b1", 10, {"a": "x"})
    write_lake(paths.parquet, "submission_answers", answer_rows([sub]), bot_id="b1", stem="p0")
    load_warehouse(paths)
    assert _answers(paths, "s1") == {"a": "x"}
    write_lake(paths.parquet, "submissions", [sub], bot_id="b1", stem="p0")
    load_warehouse(paths)
    assert _answers(paths, "s1") == {"a": "x"}
    assert _submissions(paths)["s1"][0] == "COMPLETED"


def test_bot_fields_are_replaced_per_bot_only_by_a_newer_or_equal_version(
    paths: DataPaths,
) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 10)], stem="p0")
    three = field_rows("b1", 10, [("a", "short_text"), ("b", "number"), ("c", "date")])
    write_lake(paths.parquet, "intake_bot_fields", three, bot_id="b1", stem="detail")
    load_warehouse(paths)
    two = field_rows("b1", 20, [("a", "short_text"), ("b", "short_text")])
    write_lake(paths.parquet, "intake_bot_fields", two, bot_id="b1", stem="detail-2")
    report = load_warehouse(paths)
    assert report.tables["intake_bot_fields"] == TableCounts(updated=2, deleted=1)
    older = field_rows("b1", 5, [("zzz", "number")])
    write_lake(paths.parquet, "intake_bot_fields", older, bot_id="b1", stem="detail-0")
    report = load_warehouse(paths)
    assert report.tables["intake_bot_fields"] == TableCounts(unchanged=1)
    assert fetch(paths, "select name, type from intake_bot_fields order by position") == [
        ("a", "short_text"),
        ("b", "short_text"),
    ]
    # The schema the newer version replaced is kept for the drift check.
    assert fetch(paths, "select count(*) from intake_bot_fields_previous") == [(3,)]


def test_a_replaced_file_is_loaded_again(paths: DataPaths) -> None:
    _one_bot(paths)
    page = [submission_row("s1", "b1", 10, {"a": "x"}, status="IN_PROGRESS")]
    write_submissions(paths.parquet, page, bot_id="b1", stem="p0")
    load_warehouse(paths)
    # The same page re-run later: same path, new content.
    page = [submission_row("s1", "b1", 11, {"a": "x"}, status="COMPLETED")]
    write_submissions(paths.parquet, page, bot_id="b1", stem="p0")
    report = load_warehouse(paths)
    assert report.files_loaded["submissions"] == 1
    assert report.tables["submissions"] == TableCounts(updated=1)
    assert _submissions(paths)["s1"][0] == "COMPLETED"
    assert fetch(paths, "select count(*) from load_ledger where path like 'submissions/%'") == [
        (1,)
    ]


def _webhooks(paths: DataPaths) -> list[tuple[str, str]]:
    return [(str(i), str(u)) for i, u in fetch(paths, "select id, url from webhooks order by id")]


def test_the_newest_webhooks_snapshot_is_the_whole_table(paths: DataPaths) -> None:
    lake = paths.parquet
    # Files are named by the run's compact synced_at, as sync_webhooks names them.
    write_lake(lake, "webhooks", [webhook_row("w1", 10), webhook_row("w2", 10)], stem="T0900Z")
    assert load_warehouse(paths).tables["webhooks"] == TableCounts(inserted=2)
    write_lake(lake, "webhooks", [webhook_row("w1", 20, "https://b.test")], stem="T1000Z")
    report = load_warehouse(paths)
    assert report.tables["webhooks"] == TableCounts(updated=1, deleted=1)
    assert _webhooks(paths) == [("w1", "https://b.test")]
    # An older snapshot arriving late does not bring a deleted endpoint back.
    write_lake(lake, "webhooks", [webhook_row("w1", 1), webhook_row("w2", 1)], stem="T0800Z")
    assert load_warehouse(paths).tables["webhooks"] == TableCounts()
    assert _webhooks(paths) == [("w1", "https://b.test")]
    # A run that lists no endpoint writes a file with no rows: the table empties.
    write_lake(lake, "webhooks", [], stem="T1100Z")
    assert load_warehouse(paths).tables["webhooks"] == TableCounts(deleted=1)
    assert _webhooks(paths) == []
    assert rebuild_warehouse(paths).tables["webhooks"] == TableCounts()
    assert _webhooks(paths) == []
    # The next snapshot fills it again.
    write_lake(lake, "webhooks", [webhook_row("w3", 30)], stem="T1200Z")
    assert load_warehouse(paths).tables["webhooks"] == TableCounts(inserted=1)
    assert _webhooks(paths) == [("w3", "https://example.test/hook")]


def test_a_rewritten_webhooks_snapshot_replaces_the_table(paths: DataPaths) -> None:
    write_lake(paths.parquet, "webhooks", [webhook_row("w1", 10)], stem="T0900Z")
    load_warehouse(paths)
    write_lake(paths.parquet, "webhooks", [webhook_row("w2", 10)], stem="T0900Z")
    assert load_warehouse(paths).tables["webhooks"] == TableCounts(inserted=1, deleted=1)
    assert [i for i, _ in _webhooks(paths)] == ["w2"]


def test_bad_files_are_named_and_the_rest_loads(paths: DataPaths) -> None:
    _one_bot(paths)
    write_submissions(
        paths.parquet, [submission_row("s1", "b1", 10, {"a": "x"})], bot_id="b1", stem="p0"
    )
    broken = paths.parquet / "submissions" / "bot_id=b1" / "p1.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    wrong = paths.parquet / "webhooks" / "p0.parquet"
    wrong.parent.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["w1"]}), wrong)
    report = load_warehouse(paths)
    reasons = {r.path: r.reason for r in report.rejected}
    assert set(reasons) == {"submissions/bot_id=b1/p1.parquet", "webhooks/p0.parquet"}
    assert "unreadable Parquet file" in reasons["submissions/bot_id=b1/p1.parquet"]
    assert "missing column url" in reasons["webhooks/p0.parquet"]
    assert report.tables["submissions"] == TableCounts(inserted=1)
    # Not ledgered: once fixed (rewritten), the file loads.
    write_lake(paths.parquet, "webhooks", [webhook_row("w1", 1)], stem="p0")
    assert load_warehouse(paths).tables["webhooks"] == TableCounts(inserted=1)


def test_files_owed_counts_what_the_published_warehouse_lacks(paths: DataPaths) -> None:
    _one_bot(paths)
    assert files_owed(paths) == 1  # no warehouse yet: every file
    load_warehouse(paths)
    assert files_owed(paths) == 0
    page = [submission_row("s1", "b1", 10, {"a": "x"})]
    write_submissions(paths.parquet, page, bot_id="b1", stem="p0")
    assert files_owed(paths) == 2
    # A file no load can take is not owed: it would make every sync load for nothing.
    (paths.parquet / "submissions" / "bot_id=b1" / "p1.parquet").write_bytes(b"PAR1 junk")
    assert files_owed(paths) == 2
    # The writer file alone moving on (a publication that failed) is still owed to readers.
    published = paths.published_db.read_bytes()
    load_warehouse(paths)
    paths.published_db.write_bytes(published)
    assert files_owed(paths) == 2
    load_warehouse(paths)
    assert files_owed(paths) == 0
    assert _submissions(paths)["s1"][0] == "COMPLETED"
    # A published file that cannot be read owes everything.
    paths.published_db.write_bytes(b"not a database")
    assert files_owed(paths) == 3


def test_temporary_files_of_writers_are_ignored(paths: DataPaths) -> None:
    _one_bot(paths)
    folder = paths.parquet / "submissions" / "bot_id=b1"
    folder.mkdir(parents=True)
    (folder / ".p0.parquet.tmp").write_bytes(b"half written")
    (folder / ".p1.parquet").write_bytes(b"half written")
    report = load_warehouse(paths)
    assert report.rejected == ()
    assert report.tables["submissions"] == TableCounts()
    assert fetch(paths, "select count(*) from submissions") == [(0,)]


# ---- against ground truth: random versions, files, batches and load orders ----------------

_versions = st.lists(
    st.tuples(
        st.sampled_from(["s1", "s2", "s3", "s4"]),
        st.integers(min_value=1, max_value=6),  # updated_at (minutes)
        st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True),  # answered fields
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(versions=_versions, files=st.data())
def test_incremental_loads_in_any_order_match_ground_truth_and_rebuild(
    tmp_path_factory: Any, versions: list[tuple[str, int, list[str]]], files: st.DataObject
) -> None:
    paths = DataPaths(Path(tmp_path_factory.mktemp("lake")))
    _one_bot(paths)
    # The ground truth: each submission at its newest version (a version is one content).
    content: dict[tuple[str, int], dict[str, str]] = {}
    rows = []
    for sid, minute, fields in versions:
        # The same version always carries the same content.
        data = content.setdefault((sid, minute), {f: f"{sid}-{minute}-{f}" for f in fields})
        rows.append(submission_row(sid, "b1", minute, data, synced=100))
    # Split the versions into pages, and the pages into loads, in a random order.
    page_of = files.draw(st.lists(st.integers(0, 3), min_size=len(rows), max_size=len(rows)))
    pages: dict[int, list[dict[str, Any]]] = {}
    truth: dict[str, tuple[int, dict[str, str]]] = {}
    for row, page in zip(rows, page_of, strict=True):
        pages.setdefault(page, [])
        if any(r["id"] == row["id"] for r in pages[page]):
            continue  # a page lists a submission once
        pages[page].append(row)
        minute = row["updated_at"].minute
        if row["id"] not in truth or minute > truth[row["id"]][0]:
            truth[row["id"]] = (minute, json.loads(row["data"]))
    order = files.draw(st.permutations(sorted(pages)))
    for page in order:
        write_submissions(paths.parquet, pages[page], bot_id="b1", stem=f"p{page}")
        if files.draw(st.booleans()):
            load_warehouse(paths)
    load_warehouse(paths)

    held = {
        str(i): (str(d), u.minute)
        for i, d, u in fetch(paths, "select id, data, updated_at from submissions")
    }
    assert held == {
        sid: (json.dumps(data, sort_keys=True), minute) for sid, (minute, data) in truth.items()
    }
    for sid, (_, data) in truth.items():
        assert _answers(paths, sid) == data
    incremental = {t: table_rows(paths, t) for t in ("submissions", "submission_answers")}
    rebuild_warehouse(paths)
    assert {t: table_rows(paths, t) for t in incremental} == incremental


def _write_other_schema(path: Path, rows: list[dict[str, Any]], table: str) -> None:
    """As another writer would: columns reversed, integers as int32, one extra column."""
    fields = [
        pa.field(f.name, pa.int32()) if pa.types.is_int64(f.type) else f
        for f in reversed(LAKE_TABLES[table])
    ]
    data = pa.Table.from_pylist(rows, schema=pa.schema(fields))
    data = data.append_column("written_by", pa.array(["other"] * len(rows)))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, path)


def test_files_of_different_column_layouts_load_together(paths: DataPaths) -> None:
    _one_bot(paths)
    first = [submission_row(f"s{i}", "b1", 10, {"a": f"x{i}", "n": i}) for i in range(3)]
    # Files alike: read without unifying their types.
    write_submissions(paths.parquet, first, bot_id="b1", stem="p0")
    assert load_warehouse(paths).tables["submissions"] == TableCounts(inserted=3)
    # In one load, a file of another layout (first by name: int32 counts) and one as the
    # extraction writes it, whose count does not fit an int32: the types must be unified.
    other = [submission_row(f"t{i}", "b1", 10, {"a": f"y{i}", "n": i}) for i in range(2)]
    _write_other_schema(
        paths.parquet / "submissions" / "bot_id=b1" / "a0.parquet", other, "submissions"
    )
    _write_other_schema(
        paths.parquet / "submission_answers" / "bot_id=b1" / "a0.parquet",
        answer_rows(other),
        "submission_answers",
    )
    big = submission_row("s9", "b1", 10, {"a": "z", "n": 9})
    big["message_count"] = 2**40
    write_submissions(paths.parquet, [big], bot_id="b1", stem="p1")
    report = load_warehouse(paths)
    assert report.rejected == ()
    assert report.tables["submissions"] == TableCounts(inserted=3)
    assert report.tables["submission_answers"] == TableCounts(inserted=6)
    assert _answers(paths, "t1") == {"a": "y1", "n": 1.0}
    assert fetch(
        paths, "select id, message_count from submissions where id in ('t1', 's9') order by id"
    ) == [("s9", 2**40), ("t1", 1)]
    loaded = fetch(paths, "select * from submissions order by id")
    rebuild_warehouse(paths)
    assert fetch(paths, "select * from submissions order by id") == loaded
