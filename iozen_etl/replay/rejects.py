"""The rejects CSV: the rows that need a person, beside the input, with ``_row`` and ``_reason``.

The cells are written as they were read, except that a cell a spreadsheet would run as a
formula gets a ``'`` in front (``formulas``), which the reader removes again: a corrected rejects
file can be replayed as it is. Replaying a rejects file gives a rejects file with the new
``_row`` and ``_reason`` in place of the old ones.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from iozen_etl.replay.csvfile import REJECTS_COLUMNS, CsvRow
from iozen_etl.replay.formulas import escape_cell

REJECTS_SUFFIX = ".rejects.csv"


def rejects_path_for(csv_path: Path) -> Path:
    """``<name>.rejects.csv`` beside the input."""
    return csv_path.with_name(csv_path.stem + REJECTS_SUFFIX)


class RejectsFile:
    """The rejects CSV, written to a temporary name and moved into place when complete."""

    def __init__(self, csv_path: Path, header: tuple[str, ...]) -> None:
        self.path = rejects_path_for(csv_path)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._header = header
        # An input that is itself a rejects file has its own _row and _reason; they are replaced.
        self._kept = [i for i, name in enumerate(header) if name not in REJECTS_COLUMNS]
        self._handle: IO[str] | None = None
        self._writer: Any = None
        self.written = False

    def add(self, row: CsvRow, reason: str) -> None:
        with self._naming_the_file():
            if self._handle is None:
                self._handle = self._tmp.open("w", encoding="utf-8", newline="")
                self._writer = csv.writer(self._handle)
                # _row and _reason first: the reason is what a person reads first, and extra
                # cells of an over-long row stay at the end instead of landing under these.
                self._write([*REJECTS_COLUMNS, *(self._header[i] for i in self._kept)])
            cells = row.cells
            kept = [cells[i] for i in self._kept if i < len(cells)]
            self._write([str(row.number), reason, *kept, *cells[len(self._header) :]])

    def _write(self, cells: list[str]) -> None:
        self._writer.writerow([escape_cell(cell) for cell in cells])

    def finish(self) -> None:
        if self._handle is not None:
            with self._naming_the_file():
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()
            self._handle = None
            os.replace(self._tmp, self.path)
            self.written = True
        else:
            # A clean run leaves no stale rejects from an earlier one.
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            # Flushing what is buffered fails as the write before it did (disk full), and the
            # temporary file goes either way.
            with suppress(OSError):
                handle.close()
            self._tmp.unlink(missing_ok=True)

    @contextmanager
    def _naming_the_file(self) -> Iterator[None]:
        """A write to a file object names no file ("No space left on device"): name it."""
        try:
            yield
        except OSError as error:
            if error.filename is not None:
                raise
            raise OSError(error.errno, error.strerror, str(self.path)) from error
