"""Storage faults: an ``iozen-etl`` command in a child process whose files cannot grow past a
size (``RLIMIT_FSIZE``), what it said, and what it left on disk."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
# The writers of a data directory, each known by the file names it writes (first match wins).
WRITERS = (
    ("Parquet lake", re.compile(r"/parquet/")),
    ("state file", re.compile(r"state\.sqlite")),
    ("DuckDB writer", re.compile(r"iozen_write\.duckdb")),
    ("publish", re.compile(r"iozen\.duckdb")),
    ("rejects file", re.compile(r"\.rejects\.csv")),
)


def file_size_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn``: no file of the child (or of its children) may grow past ``limit``."""

    def limit_files() -> None:
        # Ignored, SIGXFSZ turns into EFBIG from the write: the child lives to say what failed.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_files


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        """The command's last word on stderr (its one-line reason when it failed)."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def run_command(
    args: list[str], env: Mapping[str, str], *, limit: int | None = None, timeout: float = 300
) -> Outcome:
    """``python -m iozen_etl ARGS`` with ``env`` added, its files limited to ``limit`` bytes."""
    done = subprocess.run(
        [sys.executable, "-m", "iozen_etl", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=None if limit is None else file_size_limit(limit),
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def writer_named(line: str, data_dir: Path) -> str | None:
    """Which writer's file a line names by its path under ``data_dir``; None: no path named."""
    at = line.find(str(data_dir))
    if at < 0:
        return None
    named = line[at:]
    return next((writer for writer, pattern in WRITERS if pattern.search(named)), None)


def torn_files(data_dir: Path) -> list[Path]:
    """Files a reader could take for complete but that are not: a Parquet file under a visible
    name that does not read back, a published warehouse that does not open, a staging copy
    left under a name that is not hidden."""
    torn: list[Path] = []
    for path in sorted((data_dir / "parquet").rglob("*.parquet")):
        if path.name.startswith("."):
            continue  # a writer's temporary file: readers skip dot-files
        try:
            pq.read_table(path)
        except Exception:
            torn.append(path)
    published = data_dir / "iozen.duckdb"
    if published.exists():
        try:
            with duckdb.connect(str(published), read_only=True) as con:
                con.execute("select count(*) from submissions").fetchall()
        except duckdb.Error:
            torn.append(published)
    torn.extend(sorted(data_dir.glob("iozen.duckdb.next*")))
    torn.extend(sorted(data_dir.rglob("*.rejects.csv.tmp")))
    return torn


def largest_file(folder: Path, pattern: str = "*") -> int:
    """The size of the largest file under ``folder`` matching ``pattern`` (0: none)."""
    return max((p.stat().st_size for p in folder.rglob(pattern) if p.is_file()), default=0)


@contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    """No entry of ``folder`` can be created or removed (its subfolders stay writable).

    Mode 0555 does not stop root, so as root the folder is made immutable (``chattr +i``, which
    needs CAP_LINUX_IMMUTABLE and a file system that has the flag); where that cannot be done
    the test is skipped, saying why.
    """
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    if shutil.which("chattr") is None:
        pytest.skip("as root, a read-only folder needs chattr +i, and chattr is not installed")
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"as root, a read-only folder needs chattr +i, refused here: {made.stderr}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
