"""Find the Parquet files of the lake, tell which ones the warehouse has not loaded yet, and
check by their footers that those can be loaded."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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

    def __init__(self, lake_root: Path) -> None:
        self._lake_root = lake_root
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
            metadata = pq.read_metadata(self._lake_root / lake_file.rel_path)
        except (OSError, pa.ArrowException) as error:
            return 0, f"unreadable Parquet file: {error}", -1
        problems, layout = self._judge(lake_file.table, metadata)
        if problems:
            return 0, problems, -1
        return int(metadata.num_rows), None, layout
