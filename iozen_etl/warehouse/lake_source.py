"""Where a load reads the lake's new files: the local lake itself, or local copies of the new
objects of a lake in an object store.

The load reads local files only: DuckDB would need its httpfs extension, downloaded from the
internet when first used, to read ``s3://``. So a load from an object store first copies the
objects it has not loaded yet into ``<warehouse dir>/lake-cache/<schema>/`` (streamed, a few
at a time), checks their footers and merges them there, and removes the copies when it ends,
whether it succeeded or not. Copies a killed load left behind are removed by the next one
(loads of one warehouse never overlap: they hold its writer lock).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from iozen_etl.settings import DataPaths
from iozen_etl.sync.lake_location import ObjectStore, locate
from iozen_etl.warehouse.lake_files import FooterChecks, LakeFile, list_lake, list_object_lake

# Objects copied at once: each copy mostly waits on the store.
COPIES_AT_ONCE = 8
COPY_CHUNK_BYTES = 1 << 20


class LocalSource:
    """A lake on the local disk: its files are read where they are."""

    def __init__(self, lake_root: Path) -> None:
        self.root = lake_root  # where the listed files can be read

    def list_files(
        self, loaded: Mapping[str, tuple[int, int, int]] | None = None
    ) -> list[LakeFile]:
        return list_lake(self.root, loaded)

    def footers(self) -> FooterChecks:
        """Footer checks of files where they live."""
        return FooterChecks(self.root)

    def fetch(self, files: Sequence[LakeFile]) -> list[LakeFile]:
        """The files readable under ``root``: all of them."""
        return list(files)

    def close(self) -> None:
        pass


class ObjectSource:
    """A lake in an object store: the new objects are read from local copies under ``root``."""

    def __init__(self, store: ObjectStore, staging: Path) -> None:
        self.store = store
        self.root = staging  # where the fetched files can be read

    def list_files(
        self, loaded: Mapping[str, tuple[int, int, int]] | None = None
    ) -> list[LakeFile]:
        return list_object_lake(self.store, loaded)

    def footers(self) -> FooterChecks:
        """Footer checks of objects where they live (only each footer is read)."""
        return FooterChecks(self.store.base, self.store.filesystem)

    def fetch(self, files: Sequence[LakeFile]) -> list[LakeFile]:
        """Copy ``files`` under ``root``; returns those copied (an object removed since the
        listing is left out, as a local file removed meanwhile is)."""
        self.close()
        with ThreadPoolExecutor(COPIES_AT_ONCE) as pool:
            copied = list(pool.map(self._copy, files))
        return [lake_file for lake_file, done in zip(files, copied, strict=True) if done]

    def _copy(self, lake_file: LakeFile) -> bool:
        target = self.root / lake_file.rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        name = self.store.path(lake_file.rel_path)
        try:
            with (
                self.store.filesystem.open_input_stream(name) as source,
                target.open("wb") as copy,
            ):
                shutil.copyfileobj(source, copy, COPY_CHUNK_BYTES)
        except FileNotFoundError:
            return False
        except OSError as error:
            raise OSError(f"lake object {name}: could not copy it for the load: {error}") from error
        return True

    def close(self) -> None:
        """Remove the local copies."""
        shutil.rmtree(self.root, ignore_errors=True)


LakeSource = LocalSource | ObjectSource


def open_source(paths: DataPaths) -> LakeSource:
    """The lake of ``paths`` as the load reads it (``LakeLocationError`` for a URI that cannot
    be used). Copies of an object store's objects go under the warehouse directory, one folder
    per warehouse schema, so the workspaces of one warehouse never share one."""
    where = locate(paths.lake)
    if isinstance(where, Path):
        return LocalSource(where)
    return ObjectSource(where, paths.writer_db.parent / "lake-cache" / paths.warehouse_schema)
