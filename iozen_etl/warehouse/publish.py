"""The single-writer lock and the atomic publication of the analysts' snapshot.

Readers open ``iozen.duckdb`` read-only; the load writes only its private file and then swaps a
complete copy into place (``../shared/design/duckdb-readers.md``, approach 4). A reader holding
the old file keeps reading the old state; a new reader sees the new one; nobody sees half a load.

Making the copy is what a small load would otherwise spend most on: writing and fsyncing the
whole file, then freeing the replaced one, grows with the warehouse, not with what is new. So
the copy is made, cheapest first:

1. as a reflink (``FICLONE``) where the file system shares blocks (btrfs, XFS): no data moves;
2. by rewriting the *spare* in place: the snapshot replaced by the previous publication is kept
   as ``iozen.duckdb.spare``, and only its blocks that differ from the writer file are written
   (a load changes a few MB of a 120 MB file), so the fsync flushes only those and no 120 MB
   file is freed. This is done only when no other name links to the spare, no process holds
   a lock on it (a DuckDB connection holds one while it is open), no descriptor of this
   process refers to it, and under our own write lock: a DuckDB reader still on that old
   snapshot is never touched, the load copies instead. A program that reads the file without
   DuckDB's lock (``cp``, a backup) must copy ``iozen.duckdb`` within one load interval;
3. otherwise a plain copy of the whole file.

Every way, the staged file is fsynced before the rename and the folder after it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
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


def _flock_struct(lock_type: int) -> bytes:
    # struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len,
    # pid_t l_pid (native alignment, 0 as open file description locks require), padded to
    # the C struct's size. l_len 0 is the whole file.
    request = struct.pack("@hhqqi", lock_type, os.SEEK_SET, 0, 0, 0)
    return request + b"\0" * (32 - len(request))


def _lock_conflicts(fd: int, lock_type: int, command: int = fcntl.F_GETLK) -> bool:
    """True if a lock held on the file conflicts with a ``lock_type`` lock asked through ``fd``.

    With F_GETLK the caller's own process's locks never conflict; an open file description
    lock (F_OFD_GETLK) conflicts with every process's.
    """
    answer = fcntl.fcntl(fd, command, _flock_struct(lock_type))
    return bool(struct.unpack_from("@h", answer)[0] != fcntl.F_UNLCK)


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
        return _lock_conflicts(fd, fcntl.F_RDLCK)
    finally:
        os.close(fd)


# Linux's FICLONE ioctl: the destination shares the source's blocks (copy-on-write).
FICLONE = 0x40049409
# DuckDB's block size: the unit compared when the spare is brought up to date.
DELTA_CHUNK = 256 * 1024


def _reflink(source_fd: int, target_fd: int) -> bool:
    """Make the target share the source's blocks; False where the file system cannot."""
    try:
        fcntl.ioctl(target_fd, FICLONE, source_fd)
    except OSError as error:
        # ext4, tmpfs (EOPNOTSUPP), another file system (EXDEV), no such ioctl (ENOTTY,
        # EINVAL), or a kernel that refuses it (EPERM): copy instead.
        if error.errno in (
            errno.EOPNOTSUPP,
            errno.EXDEV,
            errno.ENOTTY,
            errno.EINVAL,
            errno.EPERM,
            errno.ENOSYS,
        ):
            return False
        raise
    return True


def _copy_whole(source_fd: int, target_fd: int) -> None:
    """The whole source into the (empty) target, in the kernel where it can."""
    remaining = os.fstat(source_fd).st_size
    offset = 0
    while remaining > 0:
        try:
            copied = os.copy_file_range(source_fd, target_fd, remaining, offset, offset)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            copied = 0
        if copied == 0:  # refused, or a file system that copies nothing this way
            break
        offset += copied
        remaining -= copied
    while remaining > 0:
        chunk = os.pread(source_fd, min(remaining, DELTA_CHUNK), offset)
        if not chunk:
            break
        os.pwrite(target_fd, chunk, offset)
        offset += len(chunk)
        remaining -= len(chunk)


def rewrite_changed_blocks(source_fd: int, target_fd: int) -> int:
    """Make the target's bytes equal the source's, writing only the chunks that differ."""
    size = os.fstat(source_fd).st_size
    written = 0
    offset = 0
    while offset < size:
        wanted = os.pread(source_fd, DELTA_CHUNK, offset)
        if not wanted:
            break
        if os.pread(target_fd, len(wanted), offset) != wanted:
            os.pwrite(target_fd, wanted, offset)
            written += len(wanted)
        offset += len(wanted)
    os.ftruncate(target_fd, size)
    return written


def _open_in_this_process(info: os.stat_result) -> bool:
    """True if a descriptor of this process refers to the file (or if that cannot be told).

    A DuckDB connection keeps its file open. Its lock cannot be relied on within the process
    that holds it: POSIX drops every lock a process holds on a file as soon as that process
    closes any descriptor of it, which the publication's own checks do.
    """
    fd_dir = Path("/proc/self/fd")
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return True
    for name in names:
        try:
            held = os.stat(fd_dir / name)
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        if (held.st_dev, held.st_ino) == (info.st_dev, info.st_ino):
            return True
    return False


def _locked_by_any_process(path: Path) -> bool:
    """True if any process holds a lock on the file: DuckDB connections do while open."""
    if not hasattr(fcntl, "F_OFD_GETLK"):
        return True  # cannot be told: take it as locked
    fd = os.open(path, os.O_RDONLY)
    try:
        # An open file description lock request conflicts with every other process's lock.
        return _lock_conflicts(fd, fcntl.F_WRLCK, fcntl.F_OFD_GETLK)
    finally:
        os.close(fd)


def _take_spare(spare: Path, staging: Path) -> bool:
    """Move the spare to the staging name if no one can be reading it; else drop its name."""
    try:
        info = os.stat(spare)
    except FileNotFoundError:
        return False
    # A second name (the published one, after a load killed between link and rename) means
    # anyone may open it; an open descriptor or a lock means a reader still has it.
    usable = (
        info.st_nlink == 1 and not _open_in_this_process(info) and not _locked_by_any_process(spare)
    )
    if usable:
        os.replace(spare, staging)
    else:
        spare.unlink(missing_ok=True)  # its blocks are freed when its last reader closes it
    return usable


def _stage_in_spare(source_fd: int, staging: Path) -> int | None:
    """Bring the spare (now at the staging name) up to date: bytes written, or None if taken."""
    os.chmod(staging, 0o644)  # its 0444 refuses an unprivileged write
    fd = os.open(staging, os.O_RDWR)
    try:
        try:
            # Held until closed: a DuckDB reader opening this old snapshot right now, in any
            # process, is refused rather than shown a half-rewritten file.
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock_struct(fcntl.F_WRLCK))
        except OSError:
            return None
        written = rewrite_changed_blocks(source_fd, fd)
        os.fsync(fd)
        return written
    finally:
        os.close(fd)


def stage_reflink(source_fd: int, staging: Path) -> bool:
    """A new staging file sharing the writer file's blocks (fsynced); False where refused."""
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        cloned = _reflink(source_fd, fd)
        if cloned:
            os.fsync(fd)
    finally:
        os.close(fd)
    if not cloned:
        staging.unlink()
    return cloned


def stage_copy(source_fd: int, staging: Path) -> int:
    """A new staging file holding a whole copy, fsynced; returns the bytes written."""
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _copy_whole(source_fd, fd)
        os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Publication:
    """How a snapshot was published, or why not (for the load's metadata)."""

    skipped: str | None = None
    method: str = ""  # "reflink", "spare" (only changed blocks rewritten) or "copy"
    bytes_written: int = 0


def publish_copy(writer_db: Path, published_db: Path) -> Publication:
    """Copy the (checkpointed, still open) writer file over the published one, atomically.

    ``skipped`` is None when published, else the reason the publication was skipped: the load
    is safe in the writer file either way, and the next load publishes it.
    """
    staging = published_db.with_name(published_db.name + ".next")
    spare = published_db.with_name(published_db.name + ".spare")
    published_wal = published_db.with_name(published_db.name + ".wal")
    # Only an analyst who opened the snapshot read-write (root ignores its 0444 mode) can
    # write a WAL next to it; a new file beside their WAL would be refused by every new reader.
    # So while anyone holds it read-write, keep the old snapshot and let a later load publish.
    if write_locked_by_other_process(published_db):
        return Publication(skipped=f"{published_db} is open read-write by another process")
    # A WAL nobody holds is a stray from a killed read-write session: it belongs to no file.
    published_wal.unlink(missing_ok=True)
    # A stale staging WAL would be replayed into the fresh copy, applying a load twice.
    for leftover in (staging, staging.with_name(staging.name + ".wal")):
        leftover.unlink(missing_ok=True)
    published_db.parent.mkdir(parents=True, exist_ok=True)
    source_fd = os.open(writer_db, os.O_RDONLY)
    try:
        method, written = "reflink", 0
        if not stage_reflink(source_fd, staging):
            rewritten = _stage_in_spare(source_fd, staging) if _take_spare(spare, staging) else None
            if rewritten is None:  # no spare, or a reader opened it meanwhile (it is theirs)
                staging.unlink(missing_ok=True)
                method, written = "copy", stage_copy(source_fd, staging)
            else:
                method, written = "spare", rewritten
    except BaseException as error:
        # Never leave a half-written copy beside the snapshot; the writer file keeps the load.
        staging.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:
            # copy_file_range, pwrite and fsync name no file ("File too large"): name it.
            raise OSError(error.errno, error.strerror, str(staging)) from error
        raise
    finally:
        os.close(source_fd)
    os.chmod(staging, 0o444)  # an analyst's read-write open fails instead of writing a WAL
    # The snapshot being replaced is the next publication's spare (not needed with reflinks).
    spare.unlink(missing_ok=True)
    if method != "reflink":
        # None on the first publication; a file system without hard links copies each time.
        with contextlib.suppress(OSError):
            os.link(published_db, spare)
    os.replace(staging, published_db)
    _fsync_path(published_db.parent)
    return Publication(method=method, bytes_written=written)
