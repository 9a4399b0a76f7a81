"""Readers in other processes are never blocked, never broken, never see half a load."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import duckdb
import pytest

from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import WarehouseBusy, load_warehouse
from iozen_etl.warehouse.load import lock_path
from iozen_etl.warehouse.publish import (
    DELTA_CHUNK,
    rewrite_changed_blocks,
    stage_copy,
    stage_reflink,
    writer_lock,
)
from tests.support.lake import bot_row, submission_row, write_lake, write_submissions
from tests.support.warehouse import fetch

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


@contextlib.contextmanager
def holding_reader(paths: DataPaths) -> Iterator[tuple[IO[str], IO[str]]]:
    """A first load, then a reader in another process that holds the published file open (it
    has answered "before 1"). Yields its stdin and stdout; it must exit cleanly once the block
    has told it to go on."""
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
        yield reader.stdin, reader.stdout
    finally:
        reader.communicate(timeout=60)
    assert reader.returncode == 0


@pytest.mark.slow
def test_a_load_while_another_process_holds_a_read_connection(paths: DataPaths) -> None:
    with holding_reader(paths) as (to_reader, from_reader):
        _page(paths, 1, 2, "p1")
        report = load_warehouse(paths)  # neither fails nor waits for the reader
        assert report.published, report.publish_skipped_reason
        assert fetch(paths, "select count(*) from submissions") == [(3,)]
        to_reader.write("go\n")
        to_reader.flush()
        assert from_reader.readline().split() == ["held", "1"]  # its snapshot, unchanged
        assert from_reader.readline().split() == ["fresh", "3"]


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
    with writer_lock(lock_path(paths)), pytest.raises(WarehouseBusy):
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


def _spare(paths: DataPaths) -> Path:
    return paths.published_db.with_name(paths.published_db.name + ".spare")


def _methods_or_skip(paths: DataPaths, loads: int, start: int) -> list[str]:
    methods = []
    for load in range(loads):
        _page(paths, start + load * 2, 2, f"m{start + load}")
        report = load_warehouse(paths)
        assert report.published
        methods.append(report.publish_method)
    if "reflink" in methods:
        pytest.skip("this file system makes reflinks: no copy, no spare")
    return methods


def test_publication_rewrites_only_the_changed_blocks_of_the_spare(paths: DataPaths) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 0)])
    _page(paths, 0, 2, "p0")
    first = load_warehouse(paths)
    first_inode = paths.published_db.stat().st_ino
    # The first two publications copy; from then on, the snapshot two loads old is rewritten.
    assert [first.publish_method, *_methods_or_skip(paths, 3, 10)] == [
        "copy",
        "copy",
        "spare",
        "spare",
    ]
    report = load_warehouse(paths)
    assert report.publish_method == "spare"
    assert 0 < report.publish_bytes_written < paths.published_db.stat().st_size
    assert report.metadata()["publish_method"] == "spare"
    # Byte for byte the writer file, read-only, and the spare is the replaced snapshot.
    assert paths.published_db.read_bytes() == paths.writer_db.read_bytes()
    assert paths.published_db.stat().st_mode & 0o777 == 0o444
    assert _spare(paths).stat().st_nlink == 1
    assert first_inode in (paths.published_db.stat().st_ino, _spare(paths).stat().st_ino)
    assert fetch(paths, "select count(*) from submissions") == [(8,)]


@pytest.mark.slow
def test_a_reader_of_an_old_snapshot_keeps_it_whole(paths: DataPaths) -> None:
    with holding_reader(paths) as (to_reader, from_reader):
        # Load 2 makes the reader's snapshot the spare; load 3 must not rewrite it (the
        # reader holds it) and copies; load 4 rewrites load 2's snapshot, which nobody holds.
        methods = _methods_or_skip(paths, 3, 10)
        assert methods == ["copy", "copy", "spare"]
        to_reader.write("go\n")
        to_reader.flush()
        assert from_reader.readline().split() == ["held", "1"]
        assert from_reader.readline().split() == ["fresh", "7"]


def test_a_connection_of_the_loading_process_is_never_rewritten(paths: DataPaths) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 0)])
    _page(paths, 0, 1, "p0")
    load_warehouse(paths)
    held = duckdb.connect(str(paths.published_db), read_only=True)
    try:
        before = held.execute("select * from submissions order by id").fetchall()
        # Its own process's lock is invisible to F_GETLK; the spare check must still see it.
        assert _methods_or_skip(paths, 3, 10) == ["copy", "copy", "spare"]
        assert held.execute("select * from submissions order by id").fetchall() == before
        assert held.execute("select count(*) from submission_answers").fetchall() == [(3,)]
    finally:
        held.close()


def test_a_spare_still_linked_to_the_snapshot_is_left_alone(paths: DataPaths) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 0)])
    _page(paths, 0, 1, "p0")
    load_warehouse(paths)
    _methods_or_skip(paths, 1, 10)
    # As a load killed between linking the spare and the rename leaves it: the spare is the
    # published file itself, which readers open.
    _spare(paths).unlink()
    os.link(paths.published_db, _spare(paths))
    with open(paths.published_db, "rb") as old_snapshot:
        before = old_snapshot.read()
        _page(paths, 20, 2, "p20")
        report = load_warehouse(paths)
        assert report.publish_method == "copy"
        old_snapshot.seek(0)
        assert old_snapshot.read() == before
    assert fetch(paths, "select count(*) from submissions") == [(5,)]
    assert load_warehouse(paths).publish_method == "spare"


def test_a_file_system_without_reflinks_gets_a_copy(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(os.urandom(3 * DELTA_CHUNK + 5))
    staging = tmp_path / "staging"
    fd = os.open(source, os.O_RDONLY)
    try:
        if stage_reflink(fd, staging):
            assert staging.read_bytes() == source.read_bytes()
            staging.unlink()
        assert not staging.exists()  # refused: nothing left behind
        assert stage_copy(fd, staging) == source.stat().st_size
        assert staging.read_bytes() == source.read_bytes()
    finally:
        os.close(fd)


def test_rewriting_changed_blocks_gives_the_same_bytes(tmp_path: Path) -> None:
    new = bytearray(os.urandom(4 * DELTA_CHUNK + 100))
    old = bytearray(new)
    old[DELTA_CHUNK + 7] ^= 0xFF  # one differing block
    old += os.urandom(DELTA_CHUNK)  # longer than the new file
    source, target = tmp_path / "new", tmp_path / "old"
    source.write_bytes(new)
    target.write_bytes(old)
    source_fd = os.open(source, os.O_RDONLY)
    target_fd = os.open(target, os.O_RDWR)
    try:
        assert rewrite_changed_blocks(source_fd, target_fd) == DELTA_CHUNK
    finally:
        os.close(source_fd)
        os.close(target_fd)
    assert target.read_bytes() == bytes(new)
