"""Find the Parquet files of the lake, tell which ones the warehouse has not loaded yet, and
check by their footers that those can be loaded.

A local lake is walked with ``os.scandir``; an object store's is listed with pyarrow's
``FileSelector``. Either way a file's version is what the listing gives, without reading it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from iozen_etl.sync.lake_location import ObjectStore
from iozen_etl.sync.schemas import LAKE_TABLES

# An object store gives modification times to the second (S3's LastModified), and its objects
# have no inode: a page rewritten with the same size within the second a load listed it would
# look unchanged. An object listed younger than this is recorded as unsettled, and every load
# takes it again until one lists it settled. The margin is that second plus any skew between
# the store's clock and this machine's.
SETTLE_NS = 5_000_000_000
# The third part of an object's version, in place of an inode.
SETTLED, UNSETTLED = 0, 1


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
    # atomic rewrite always makes a new inode, so the inode tells the two apart. An object of
    # an object store has SETTLED or UNSETTLED here (``list_object_lake``).
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


def list_object_lake(
    store: ObjectStore, loaded: Mapping[str, tuple[int, int, int]] | None = None
) -> list[LakeFile]:
    """``list_lake`` for a lake in an object store: its objects, listed table by table.

    An object is new when the ledger does not hold it as it is now, or holds it as unsettled
    (see ``SETTLE_NS``).
    """
    listed_at = time.time_ns()
    found: list[LakeFile] = []
    prefix = len(str(store.base)) + 1
    for table in LAKE_TABLES:
        selector = pafs.FileSelector(store.path(table), recursive=True, allow_not_found=True)
        for info in store.filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
                continue
            rel = info.path[prefix:]
            # Dot-files are never the lake's (the local writers' temporary names).
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            mtime_ns = int(info.mtime_ns or 0)
            young = listed_at - mtime_ns < SETTLE_NS
            version = (int(info.size), mtime_ns, UNSETTLED if young else SETTLED)
            held = None if loaded is None else loaded.get(rel)
            if held is None or held != version or held[2] == UNSETTLED:
                found.append(LakeFile(table, rel, *version))
    found.sort(key=lambda f: (f.table, f.rel_path))
    return found


def _types_compatible(found: pa.DataType, declared: pa.DataType) -> bool:
    if found == declared:
        return True
    for same_family in (
        pa.types.is_timestamp,
        pa.types.is_integer,
        pa.types.is_floating,
    ):
        if same_family(found) and same_family(declared):
            return True
    if pa.types.is_string(declared) and (
        pa.types.is_string(found) or pa.types.is_large_string(found)
    ):
        return True
    if pa.types.is_list(declared) and (pa.types.is_list(found) or pa.types.is_large_list(found)):
        return _types_compatible(found.value_type, declared.value_type)
    return False


def _schema_problems(table: str, schema: pa.Schema) -> str | None:
    problems = []
    for declared in LAKE_TABLES[table]:
        index = schema.get_field_index(declared.name)
        if index < 0:
            problems.append(f"missing column {declared.name}")
        elif not _types_compatible(schema.field(index).type, declared.type):
            problems.append(
                f"column {declared.name} is {schema.field(index).type}, expected {declared.type}"
            )
    return "; ".join(problems) or None


class FooterChecks:
    """Checks new lake files by their Parquet footer alone, judging each distinct schema once.

    Most files of a table share one schema, so a file whose schema equals one already judged
    costs only the read of its footer. A schema is the Parquet one (what DuckDB binds) and the
    Arrow one the writer stored beside it (what the check reads). Files are given the same
    layout number when their schemas are equal: DuckDB then reads them alike, without unifying
    them by name.
    """

    # Schemas remembered per table; a lake with more distinct ones is judged file by file.
    REMEMBERED = 16

    def __init__(self, lake_root: PurePath, filesystem: pafs.FileSystem | None = None) -> None:
        # A local folder, or (given its filesystem) an object store's base: pyarrow reads only
        # the footer of an object, with ranged requests.
        self._lake_root = lake_root
        self._filesystem = filesystem
        self._seen: dict[str, list[tuple[pq.ParquetSchema, bytes, str | None, int]]] = {}
        self._layouts = 0

    def _judge(self, table: str, metadata: pq.FileMetaData) -> tuple[str | None, int]:
        schema = metadata.schema
        stored = (metadata.metadata or {}).get(b"ARROW:schema", b"")
        seen = self._seen.setdefault(table, [])
        for known, known_stored, problems, layout in seen:
            if stored == known_stored and schema.equals(known):
                return problems, layout
        problems = _schema_problems(table, schema.to_arrow_schema())
        self._layouts += 1
        if len(seen) < self.REMEMBERED:
            seen.append((schema, stored, problems, self._layouts))
        return problems, self._layouts

    def check(self, lake_file: LakeFile) -> tuple[int, str | None, int]:
        """(row count, None, layout) or (0, why the file cannot be loaded, -1)."""
        try:
            where = self._lake_root / lake_file.rel_path
            metadata = pq.read_metadata(str(where), filesystem=self._filesystem)
        except (OSError, pa.ArrowException) as error:
            return 0, f"unreadable Parquet file: {error}", -1
        problems, layout = self._judge(lake_file.table, metadata)
        if problems:
            return 0, problems, -1
        return int(metadata.num_rows), None, layout
