"""The single-writer lock and the atomic publication of the analysts' snapshot.

Readers open ``iozen.duckdb`` read-only; the load writes only its private file and then swaps a
complete copy into place (``../shared/design/duckdb-readers.md``, approach 4). A reader holding
the old file keeps reading the old state; a new reader sees the new one; nobody sees half a load.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path


class WarehouseBusy(RuntimeError):
    """Another process is loading the warehouse and the caller chose not to wait."""


@contextlib.contextmanager
def writer_lock(lock_path: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock for a whole load, so two processes never load at once.

    ``flock`` is released by the kernel when the process dies, so a killed load never leaves
    a stale lock behind.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError as error:
            raise WarehouseBusy(
                f"another process is loading the warehouse ({lock_path})"
            ) from error
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_locked_by_other_process(db_file: Path) -> bool:
    """True if some process holds a POSIX write lock on the file (DuckDB's read-write open).

    Asked with F_GETLK for a *read* lock: only a write lock conflicts with it, so read-only
    analysts do not count.
    """
    try:
        fd = os.open(db_file, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        # struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len,
        # pid_t l_pid (native alignment), padded to the C struct's size.
        request = struct.pack("@hhqqi", fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0)
        request += b"\0" * (32 - len(request))
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, request)
        lock_type = struct.unpack_from("@h", answer)[0]
        return bool(lock_type != fcntl.F_UNLCK)
    finally:
        os.close(fd)


def publish_copy(writer_db: Path, published_db: Path) -> str | None:
    """Copy the (checkpointed, still open) writer file over the published one, atomically.

    Returns None when published, or the reason the publication was skipped: the load is safe
    in the writer file either way, and the next load publishes it.
    """
    staging = published_db.with_name(published_db.name + ".next")
    published_wal = published_db.with_name(published_db.name + ".wal")
    # Only an analyst who opened the snapshot read-write (root ignores its 0444 mode) can
    # write a WAL next to it; a new file beside their WAL would be refused by every new reader.
    # So while anyone holds it read-write, keep the old snapshot and let a later load publish.
    if write_locked_by_other_process(published_db):
        return f"{published_db} is open read-write by another process"
    # A WAL nobody holds is a stray from a killed read-write session: it belongs to no file.
    published_wal.unlink(missing_ok=True)
    # A stale staging WAL would be replayed into the fresh copy, applying a load twice.
    for leftover in (staging, staging.with_name(staging.name + ".wal")):
        leftover.unlink(missing_ok=True)
    published_db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(writer_db, staging)
    _fsync_path(staging)
    os.chmod(staging, 0o444)  # an analyst's read-write open fails instead of writing a WAL
    os.replace(staging, published_db)
    _fsync_path(published_db.parent)
    return None
