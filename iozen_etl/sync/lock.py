"""One sync of a data directory at a time: an exclusive lock on ``<data dir>/sync.lock``.

Two syncs of one data directory at once would both register the bots they discover (Dagster's
storage refuses the second registration and fails that run), both create a new Dagster
instance's storage (the same), and write the same bots' resume points and page files
interleaved. Dagster's pool ``iozen`` keeps the daemon's runs apart, but not an ``iozen-etl
sync`` started meanwhile, so the lock covers every way in: ``iozen-etl sync`` holds it for the
whole command, each extract step for its own work. A second sync waits, and says whom for.

Held per process: the command's own steps run in its process and go straight in. ``flock`` is
released by the kernel when a process dies, so a killed sync never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

_guard = threading.Lock()
_held: dict[Path, tuple[int, int]] = {}  # lock file -> (descriptor, times entered) here


@contextmanager
def sync_lock(lock_file: Path, *, waiting: Callable[[str], None]) -> Iterator[None]:
    """Hold the data directory's sync lock; ``waiting`` is told once if another process has it."""
    lock_file = lock_file.resolve()
    with _guard:
        held = _held.get(lock_file)
        if held is not None:
            _held[lock_file] = (held[0], held[1] + 1)
    if held is None:
        fd = _acquire(lock_file, waiting)
        with _guard:
            _held[lock_file] = (fd, 1)
    try:
        yield
    finally:
        with _guard:
            fd, entered = _held[lock_file]
            if entered == 1:
                del _held[lock_file]
                os.close(fd)  # closing releases the lock
            else:
                _held[lock_file] = (fd, entered - 1)


def _acquire(lock_file: Path, waiting: Callable[[str], None]) -> int:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            waiting(f"waiting for another sync of {lock_file.parent} to finish (held by {holder})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        # Who holds it, for the message of the next one to wait: never anything secret.
        since = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {since}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd
