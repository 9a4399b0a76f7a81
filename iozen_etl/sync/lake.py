"""The Parquet lake: one file per page, partitioned by bot, written atomically.

A file is written to a temporary name in its final folder, fsynced, then renamed over the final
name, so a reader (or a sync killed mid-write) sees either the old file or the new one, never half
of one. Rewriting the same (table, bot, stem) replaces the file: that is how a re-run of a page
replaces instead of duplicating.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from iozen_etl.sync.schemas import LAKE_TABLES

# Path segments that can be used as sent: no separators, no dots alone, no control characters,
# and short enough for any filesystem. Everything else is encoded.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_\-]{1,100}")
_TMP_SUFFIX = ".tmp"


def safe_segment(value: str) -> str:
    """``value`` itself when it is a safe file-name part, else ``~`` + a digest of it.

    ``~`` never occurs in a value used as sent, so an encoded value cannot collide with a plain
    one. The true id always stays in the rows (``intake_bot_id``), so nothing is lost.
    """
    if _SAFE_SEGMENT.fullmatch(value):
        return value
    return "~" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


class Lake:
    """``<root>/<table>/[bot_id=<segment>/]<stem>.parquet`` (root is ``DataPaths.parquet``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, table: str, bot_id: str | None, stem: str) -> Path:
        if table not in LAKE_TABLES:
            raise ValueError(f"unknown lake table {table!r}")
        folder = self.root / table
        if bot_id is not None:
            folder = folder / f"bot_id={safe_segment(bot_id)}"
        return folder / f"{safe_segment(stem)}.parquet"

    def write(self, table: str, bot_id: str | None, stem: str, data: pa.Table) -> Path:
        schema = LAKE_TABLES.get(table)
        if schema is None:
            raise ValueError(f"unknown lake table {table!r}")
        if not data.schema.equals(schema):
            raise ValueError(f"table {table!r}: data does not have the lake schema")
        final = self.path(table, bot_id, stem)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{id(data):x}{_TMP_SUFFIX}")
        try:
            with open(tmp, "wb") as handle:
                # Statistics are no use in files of one page; leaving them out saves ~20 %.
                pq.write_table(data, handle, compression="zstd", write_statistics=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return final

    def files(self, table: str) -> list[Path]:
        folder = self.root / table
        if not folder.exists():
            return []
        return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
