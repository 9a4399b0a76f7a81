"""Readers in other processes are never blocked, never broken, never see half a load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import WarehouseBusy, load_warehouse
from iozen_etl.warehouse.load import _lock_path
from iozen_etl.warehouse.publish import writer_lock
from tests.warehouse.lake import bot_row, fetch, submission_row, write_lake, write_submissions

HOLDING_READER = textwrap.dedent(
    """
    import sys, duckdb
    path = sys.argv[1]
    con = duckdb.connect(path, read_only=True)
    count = lambda c: c.execute("select count(*) from submissions").fetchall()[0][0]
    print("before", count(con), flush=True)
    sys.stdin.readline()
    print("held", count(con), flush=True)
    con.close()
    con = duckdb.connect(path, read_only=True)
    print("fresh", count(con), flush=True)
    """
)

LOOPING_READER = textwrap.dedent(
    """
    import json, os, sys, duckdb
    path, stop = sys.argv[1], sys.argv[2]
    seen, queries = set(), 0
    print("ready", flush=True)
    while not os.path.exists(stop):
        con = duckdb.connect(path, read_only=True)
        try:
            row = con.execute(
                "select (select count(*) from submissions),"
                " (select count(*) from submission_answers),"
                " (select max(load_id) from load_runs),"
                " (select count(*) from load_ledger)"
            ).fetchall()[0]
        finally:
            con.close()
        seen.add(tuple(row))
        queries += 1
    print(json.dumps({"queries": queries, "seen": sorted(seen)}), flush=True)
    """
)


def _page(paths: DataPaths, start: int, count: int, stem: str) -> None:
    subs = [
        submission_row(f"s{i:05d}", "b1", 1, {"a": "x", "b": 2, "c": True})
        for i in range(start, start + count)
    ]
    write_submissions(paths.parquet, subs, bot_id="b1", stem=stem)


@pytest.mark.slow
def test_a_load_while_another_process_holds_a_read_connection(paths: DataPaths) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 0)])
    _page(paths, 0, 1, "p0")
    load_warehouse(paths)
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLDING_READER, str(paths.published_db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdin is not None and reader.stdout is not None
    try:
        assert reader.stdout.readline().split() == ["before", "1"]
        _page(paths, 1, 2, "p1")
        report = load_warehouse(paths)  # neither fails nor waits for the reader
        assert report.published, report.publish_skipped_reason
        assert fetch(paths, "select count(*) from submissions") == [(3,)]
        reader.stdin.write("go\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["held", "1"]  # its snapshot, unchanged
        assert reader.stdout.readline().split() == ["fresh", "3"]
    finally:
        reader.communicate(timeout=60)
    assert reader.returncode == 0


@pytest.mark.slow
def test_readers_see_only_whole_loads(paths: DataPaths, tmp_path: Path) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 0)])
    _page(paths, 0, 10, "p0")
    load_warehouse(paths)
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", LOOPING_READER, str(paths.published_db), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    try:
        assert reader.stdout.readline().strip() == "ready"
        for load in range(1, 6):
            _page(paths, load * 10, 10, f"p{load}")
            assert load_warehouse(paths).published
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    assert reader.returncode == 0
    result = json.loads(out)
    assert result["queries"] > 0, result
    for submissions, answers, load_id, ledgered in result["seen"]:
        # Each load adds 10 submissions (3 answers each) and 2 files: a state is whole.
        assert submissions == 10 * load_id
        assert answers == 3 * submissions
        assert ledgered == 1 + 2 * load_id


def test_only_one_writer_at_a_time(paths: DataPaths) -> None:
    with writer_lock(_lock_path(paths)), pytest.raises(WarehouseBusy):
        load_warehouse(paths, wait=False)
    load_warehouse(paths, wait=False)  # released


def test_stale_staging_files_and_a_stray_wal_are_removed(paths: DataPaths) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 0)])
    load_warehouse(paths)
    published = paths.published_db
    leftovers = [
        published.with_name(published.name + ".next"),
        published.with_name(published.name + ".next.wal"),
        published.with_name(published.name + ".wal"),  # from a killed read-write session
    ]
    for leftover in leftovers:
        leftover.write_bytes(b"garbage from a killed process")
    _page(paths, 0, 2, "p0")
    assert load_warehouse(paths).published
    assert [p for p in leftovers if p.exists()] == []
    assert fetch(paths, "select count(*) from submissions") == [(2,)]
    assert published.stat().st_mode & 0o777 == 0o444


WRITE_LOCK_HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.readline()
    """
)


@pytest.mark.slow
def test_publish_waits_while_an_analyst_writes_to_the_snapshot(paths: DataPaths) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 0)])
    load_warehouse(paths)
    # An analyst with a read-write session on the snapshot (root ignores its 0444 mode).
    os.chmod(paths.published_db, 0o644)
    wal = paths.published_db.with_name(paths.published_db.name + ".wal")
    wal.write_bytes(b"their uncommitted work")
    holder = subprocess.Popen(
        [sys.executable, "-c", WRITE_LOCK_HOLDER, str(paths.published_db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        _page(paths, 0, 2, "p0")
        report = load_warehouse(paths)
        assert not report.published
        assert "open read-write by another process" in str(report.publish_skipped_reason)
        assert wal.exists()
    finally:
        holder.communicate(timeout=60)
    # Once they are gone, the next load publishes everything loaded meanwhile.
    report = load_warehouse(paths)
    assert report.published and not wal.exists()
    assert fetch(paths, "select count(*) from submissions") == [(2,)]
