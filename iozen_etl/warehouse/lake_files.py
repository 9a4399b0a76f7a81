"""Find the Parquet files of the lake and tell which ones the warehouse has not loaded yet."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from iozen_etl.sync.schemas import LAKE_TABLES


@dataclass(frozen=True)
class LakeFile:
    """One Parquet file as seen when the load listed the lake.

    A file re-written at the same path (a re-run of the same page) has a new size or mtime and
    so becomes a new ``LakeFile``: it is loaded again and the merge resolves the overlap.
    """

    table: str
    rel_path: str  # relative to the lake root, with "/" separators
    size_bytes: int
    mtime_ns: int
    # Coarse file-system clocks can give a rewrite within the same tick the same mtime; the
    # atomic rewrite always makes a new inode, so the inode tells the two apart.
    inode: int

    @property
    def version(self) -> tuple[int, int, int]:
        return (self.size_bytes, self.mtime_ns, self.inode)


def list_lake(
    lake_root: Path, loaded: Mapping[str, tuple[int, int, int]] | None = None
) -> list[LakeFile]:
    """Every complete Parquet file of the known lake tables, in a stable order.

    Given the ledger's versions (``loaded``), only the files it does not hold as they are now:
    compared while walking, so a known file costs its directory entry and one ``stat``.
    """
    found: list[LakeFile] = []
    prefix = len(str(lake_root)) + 1
    known = loaded.get if loaded is not None else None
    for table in LAKE_TABLES:
        folders = [str(lake_root / table)]
        while folders:
            try:
                entries = os.scandir(folders.pop())
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    name = entry.name
                    # Dot files are the writers' temporary files, renamed into place once done.
                    if name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                        continue
                    if not name.endswith(".parquet") or not entry.is_file(follow_symlinks=False):
                        continue
                    try:
                        stat = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # replaced or removed meanwhile: the next load sees it
                    rel = entry.path[prefix:].replace(os.sep, "/")
                    version = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
                    if known is None or known(rel) != version:
                        found.append(LakeFile(table, rel, *version))
    found.sort(key=lambda f: (f.table, f.rel_path))
    return found
