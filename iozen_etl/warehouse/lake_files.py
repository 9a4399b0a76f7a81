"""Find the Parquet files of the lake and tell which ones the warehouse has not loaded yet."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
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


def _walk_parquet(directory: str) -> Iterator[os.DirEntry[str]]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        # Dot files are the writers' temporary files, renamed into place once complete.
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_parquet(entry.path)
        elif entry.name.endswith(".parquet") and entry.is_file(follow_symlinks=False):
            yield entry


def list_lake(lake_root: Path) -> list[LakeFile]:
    """Every complete Parquet file of the known lake tables, in a stable order."""
    found: list[LakeFile] = []
    prefix = len(str(lake_root)) + 1
    for table in LAKE_TABLES:
        for entry in _walk_parquet(str(lake_root / table)):
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # replaced or removed between listing and stat: the next load sees it
            rel = entry.path[prefix:].replace(os.sep, "/")
            found.append(LakeFile(table, rel, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    found.sort(key=lambda f: (f.table, f.rel_path))
    return found


def new_files(
    listed: Iterable[LakeFile], loaded: Mapping[str, tuple[int, int, int]]
) -> list[LakeFile]:
    """The listed files whose (path, size, mtime, inode) the ledger does not hold."""
    return [f for f in listed if loaded.get(f.rel_path) != f.version]
