"""The Parquet lake: files of pages, partitioned by bot, written atomically and durably.

Each file is written to a temporary name in its final folder and fsynced, then renamed over the
final name, so a reader (or a sync killed mid-write) sees either the old file or the new one,
never half of one. Rewriting the same (table, bot, stem) replaces the file: that is how a re-run
of a page replaces instead of duplicating.

Durability, which the engine relies on to move a resume point only past pages already on disk:
``write_many`` returns only after every file's data is fsynced (before any rename, so no final
name can ever point at unwritten data, even after a power cut), every rename is done, and each
folder holding a renamed file is fsynced (once per folder per call: a page's submissions and
answers files share one round). A folder this process creates has its own entry fsynced in its
parent too. What a crash leaves:
- killed, or power lost, before ``write_many`` returns: each final name holds its old file or
  the new one, plus perhaps a ``.*.tmp`` leftover (never read: readers skip dot-files); the
  resume point was not moved, so the page is fetched again and its file replaced;
- after it returns: the files survive a power cut, whatever happens to the state commit after.

On an object store (``ObjectLake``, ``IOZEN_LAKE_URI``), each file is one object uploaded whole
through pyarrow's output stream: the store shows an object only once its upload completes, so
no reader ever lists half of one, and ``write_many`` returns only once every upload has
completed. A process killed mid-upload leaves an unfinished upload, which no listing shows (a
bucket lifecycle rule removes them; docs/deployment.md). The engine's order is the same for
both kinds: write, then commit the resume point.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePath

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from iozen_etl.sync.lake_location import ObjectStore, locate
from iozen_etl.sync.schemas import LAKE_TABLES

# Path segments that can be used as sent: no separators, no dots alone, no control characters,
# and short enough for any filesystem. Everything else is encoded.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_\-]{1,100}")
_TMP_SUFFIX = ".tmp"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def _encode(data: pa.Table) -> pa.Buffer:
    """Some pages as Parquet bytes. Snappy without dictionaries, statistics or a stored Arrow
    schema: for files this small these cost more CPU than they save (the Parquet types alone
    read back as the lake schema, which the tests check), and snappy encodes faster than zstd
    for somewhat more bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        data,
        sink,
        compression="snappy",
        use_dictionary=False,
        write_statistics=False,
        store_schema=False,
    )
    return sink.getvalue()


def stamp(iso: str) -> str:
    """``2026-02-22T11:00:00.000Z`` -> ``20260222T110000000Z``: a readable file-name part."""
    return re.sub(r"[^0-9A-Za-z]", "", iso)


def safe_segment(value: str) -> str:
    """``value`` itself when it is a safe file-name part, else ``~`` + a digest of it.

    ``~`` never occurs in a value used as sent, so an encoded value cannot collide with a plain
    one. The true id always stays in the rows (``intake_bot_id``), so nothing is lost.
    """
    if _SAFE_SEGMENT.fullmatch(value):
        return value
    return "~" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


class Lake:
    """``<root>/<table>/[bot_id=<segment>/]<stem>.parquet`` on the local disk (root is
    ``DataPaths.parquet``). ``Lake.open(paths.lake)`` opens either kind of lake."""

    def __init__(self, root: Path) -> None:
        # A path in the lake's filesystem: local here, ``bucket/prefix`` in an ObjectLake.
        self.root: PurePath = root

    @staticmethod
    def open(location: str) -> Lake:
        """The lake at ``location`` (``DataPaths.lake``): a local folder, or an object store's
        URI (``LakeLocationError`` if it cannot be used, or carries credentials)."""
        where = locate(location)
        return Lake(where) if isinstance(where, Path) else ObjectLake(where)

    def path(self, table: str, bot_id: str | None, stem: str) -> PurePath:
        if table not in LAKE_TABLES:
            raise ValueError(f"unknown lake table {table!r}")
        folder = self.root / table
        if bot_id is not None:
            folder = folder / f"bot_id={safe_segment(bot_id)}"
        return folder / f"{safe_segment(stem)}.parquet"

    def bot_files(self, table: str, bot_id: str) -> ds.FileSystemDataset | None:
        """The complete files of one bot's folder as a dataset (dot-files, a writer's unfinished
        ones, are skipped); None when there are none."""
        folder = Path(self.path(table, bot_id, "any").parent)
        if not folder.is_dir():
            return None
        files = ds.dataset(folder, format="parquet")
        return files if files.files else None

    def write(self, table: str, bot_id: str | None, stem: str, data: pa.Table) -> PurePath:
        return self.write_many([(table, bot_id, stem, data)])[0]

    def write_many(
        self, files: Sequence[tuple[str, str | None, str, pa.Table]]
    ) -> Sequence[PurePath]:
        """Write several files durably together: every file's data is fsynced before any rename,
        then each folder is fsynced once (a page's submissions and answers share one round).

        When this returns, every file is durable under its final name; if it raises, none of the
        temporary files is left, and each final name holds either its old or its new file.
        """
        planned = [(Path(target), blob) for target, blob in self._encode_all(files)]
        written: list[tuple[Path, Path]] = []
        try:
            for final, blob in planned:
                tmp = final.with_name(f".{final.name}.{os.getpid()}.{id(blob):x}{_TMP_SUFFIX}")
                written.append((tmp, final))
                self._write_durably(tmp, blob)
            for tmp, final in written:
                os.replace(tmp, final)
        except BaseException:
            for tmp, _ in written:
                tmp.unlink(missing_ok=True)
            raise
        for folder in dict.fromkeys(final.parent for _, final in written):
            _fsync_dir(folder)
        return [final for _, final in written]

    def _encode_all(
        self, files: Sequence[tuple[str, str | None, str, pa.Table]]
    ) -> list[tuple[PurePath, pa.Buffer]]:
        """Every file's target and bytes, each checked against its table's schema before any
        is written."""
        planned: list[tuple[PurePath, pa.Buffer]] = []
        for table, bot_id, stem, data in files:
            schema = LAKE_TABLES.get(table)
            if schema is None:
                raise ValueError(f"unknown lake table {table!r}")
            if not data.schema.equals(schema):
                raise ValueError(f"table {table!r}: data does not have the lake schema")
            planned.append((self.path(table, bot_id, stem), _encode(data)))
        return planned

    def _write_durably(self, tmp: Path, blob: pa.Buffer) -> None:
        try:
            fd = os.open(tmp, _CREATE, 0o644)
        except FileNotFoundError:
            self._make_folder(tmp.parent)
            fd = os.open(tmp, _CREATE, 0o644)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as error:
            # os.write and os.fsync name no file (a full disk says only "No space left"): the
            # error that reaches the user must say which one.
            raise OSError(error.errno, error.strerror, str(tmp)) from error
        finally:
            os.close(fd)

    def _make_folder(self, folder: Path) -> None:
        """Create ``folder`` (and its parents), and make each new entry durable in its parent:
        a file fsynced into a folder whose own entry is lost would be lost with it."""
        missing: list[Path] = []
        at = folder
        while not at.exists():
            missing.append(at)
            at = at.parent
        folder.mkdir(parents=True, exist_ok=True)
        for made in reversed(missing):
            _fsync_dir(made.parent)


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ObjectLake(Lake):
    """The lake in an object store: ``<bucket>/<prefix>/<table>/...``, one object per file."""

    def __init__(self, store: ObjectStore) -> None:
        self.root = store.base
        self.store = store

    def bot_files(self, table: str, bot_id: str) -> ds.FileSystemDataset | None:
        folder = str(self.path(table, bot_id, "any").parent)
        try:
            files = ds.dataset(folder, filesystem=self.store.filesystem, format="parquet")
        except FileNotFoundError:
            return None
        return files if files.files else None

    def write_many(
        self, files: Sequence[tuple[str, str | None, str, pa.Table]]
    ) -> Sequence[PurePath]:
        """Upload each file as one object, in order; returns once every upload has completed.

        An object becomes visible only when its upload completes, so a reader sees each name's
        old object or its new one. If this raises, the files before the one named in the error
        are complete and the rest are unchanged.
        """
        planned = self._encode_all(files)
        for target, blob in planned:
            self._upload(target, blob)
        return [target for target, _ in planned]

    def _upload(self, target: PurePath, blob: pa.Buffer) -> None:
        try:
            stream = self.store.filesystem.open_output_stream(str(target))
            # The whole object in one write: the stream holds it (or sends its parts) and
            # completes the upload only in close, once every part has arrived.
            stream.write(blob)
            stream.close()
        except (OSError, pa.ArrowException) as error:
            # An OSError, as a local write's, so a sync marks the bot failed and goes on. The
            # store's message names bucket and key; ours does too, whatever it says.
            raise OSError(f"lake object {target}: {error}") from error
