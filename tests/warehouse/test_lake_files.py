"""Listing the lake against the ledger, and judging new files by their footers alone."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from iozen_etl.settings import DataPaths
from iozen_etl.sync.schemas import LAKE_TABLES
from iozen_etl.warehouse import TableCounts, load_warehouse
from iozen_etl.warehouse.lake_files import FooterChecks, list_lake
from tests.support.lake import bot_row, submission_row, write_lake, write_submissions
from tests.support.warehouse import fetch


def _ledger(paths: DataPaths) -> dict[str, tuple[int, int, int]]:
    return {f.rel_path: f.version for f in list_lake(paths.parquet)}


def test_known_files_are_skipped_and_changed_ones_listed_again(paths: DataPaths) -> None:
    lake = paths.parquet
    write_submissions(lake, [submission_row("s1", "b1", 1, {"a": 1})], bot_id="b1", stem="p0")
    write_submissions(lake, [submission_row("s2", "b1", 1, {"a": 2})], bot_id="b1", stem="p1")
    (lake / "submissions" / "bot_id=b1" / ".p2.parquet.tmp").write_bytes(b"half written")
    ledger = _ledger(paths)
    assert len(list_lake(lake)) == 4
    assert list_lake(lake, ledger) == []
    # Rewritten in place: same inode, another size.
    target = lake / "submissions" / "bot_id=b1" / "p0.parquet"
    inode = target.stat().st_ino
    rows = [submission_row("s1", "b1", 2, {"a": 1, "b": "longer"})]
    pq.write_table(pa.Table.from_pylist(rows, schema=LAKE_TABLES["submissions"]), target)
    assert target.stat().st_ino == inode
    # Touched: same bytes, another mtime.
    touched = lake / "submission_answers" / "bot_id=b1" / "p1.parquet"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert [f.rel_path for f in list_lake(lake, ledger)] == [
        "submission_answers/bot_id=b1/p1.parquet",
        "submissions/bot_id=b1/p0.parquet",
    ]


def test_a_file_rewritten_in_place_is_checked_and_loaded_again(paths: DataPaths) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 0)])
    write_submissions(
        paths.parquet, [submission_row("s1", "b1", 1, {"a": "x"})], bot_id="b1", stem="p0"
    )
    load_warehouse(paths)
    target = paths.parquet / "submissions" / "bot_id=b1" / "p0.parquet"
    target.write_bytes(b"PAR1 not parquet any more")  # in place: the same inode
    report = load_warehouse(paths)
    assert [r.path for r in report.rejected] == ["submissions/bot_id=b1/p0.parquet"]
    rows = [submission_row("s1", "b1", 2, {"a": "y"}, status="IN_PROGRESS")]
    pq.write_table(pa.Table.from_pylist(rows, schema=LAKE_TABLES["submissions"]), target)
    report = load_warehouse(paths)
    assert report.rejected == ()
    assert report.tables["submissions"] == TableCounts(updated=1)
    assert fetch(paths, "select status from submissions") == [("IN_PROGRESS",)]


def _write(path: Path, data: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, path)


def test_footers_give_rows_layouts_and_the_same_verdict_for_the_same_schema(
    tmp_path: Path,
) -> None:
    schema = LAKE_TABLES["submissions"]
    rows = [submission_row(f"s{i}", "b1", 1, {"a": i}) for i in range(3)]
    _write(tmp_path / "submissions" / "a.parquet", pa.Table.from_pylist(rows, schema=schema))
    _write(tmp_path / "submissions" / "b.parquet", pa.Table.from_pylist(rows[:1], schema=schema))
    reordered = pa.schema(list(reversed(schema)))
    _write(tmp_path / "submissions" / "c.parquet", pa.Table.from_pylist(rows, schema=reordered))
    lacking = pa.table({"id": ["s9"]})
    _write(tmp_path / "submissions" / "d.parquet", lacking)
    _write(tmp_path / "submissions" / "e.parquet", lacking)
    (tmp_path / "submissions" / "f.parquet").write_bytes(b"not parquet")
    # The same Parquet schema as a.parquet, but stored as another Arrow type: judged apart.
    encoded = pa.Table.from_pylist(rows, schema=schema)
    status = encoded.schema.get_field_index("status")
    encoded = encoded.set_column(status, "status", encoded.column("status").dictionary_encode())
    _write(tmp_path / "submissions" / "g.parquet", encoded)
    checks = FooterChecks(tmp_path)
    verdicts = {f.rel_path: checks.check(f) for f in list_lake(tmp_path)}
    a, b, c = (verdicts[f"submissions/{n}.parquet"] for n in "abc")
    assert (a[:2], b[:2], c[:2]) == ((3, None), (1, None), (3, None))
    assert a[2] == b[2] != c[2]  # same schema, same layout; reordered columns, another
    for name in "de":  # the second one judged from the first one's verdict
        rows_found, reason, _ = verdicts[f"submissions/{name}.parquet"]
        assert rows_found == 0 and reason is not None and "missing column status" in reason
    assert "unreadable Parquet file" in str(verdicts["submissions/f.parquet"][1])
    assert "column status is dictionary" in str(verdicts["submissions/g.parquet"][1])
