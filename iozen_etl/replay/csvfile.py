"""Reading a replay CSV: the header and the rows, numbered as a spreadsheet numbers them.

Nothing here interprets a value; coercion against a bot's schema lives in ``rows``.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

IDEMPOTENCY_KEY_COLUMN = "_idempotency_key"
STATUS_COLUMN = "_status"
IS_TEST_COLUMN = "_is_test"
BOT_ID_COLUMN = "_bot_id"
RESERVED_COLUMNS = frozenset({IDEMPOTENCY_KEY_COLUMN, STATUS_COLUMN, IS_TEST_COLUMN, BOT_ID_COLUMN})
# The rejects CSV adds these two, so a corrected rejects file can be replayed as it is.
ROW_COLUMN = "_row"
REASON_COLUMN = "_reason"
REJECTS_COLUMNS = (ROW_COLUMN, REASON_COLUMN)

# A cell may legitimately approach the 1 MB body limit; the csv module's default cap (128 KiB)
# would stop the whole file instead of rejecting the one row.
_FIELD_SIZE_LIMIT = 4 * 1024 * 1024
csv.field_size_limit(max(csv.field_size_limit(), _FIELD_SIZE_LIMIT))


class CsvFileError(ValueError):
    """The file cannot be replayed at all (encoding, header, unknown column); nothing was sent."""


@dataclass(frozen=True)
class CsvRow:
    """One record; ``number`` is the row a spreadsheet shows (the header is row 1)."""

    number: int
    cells: tuple[str, ...]


class CsvReader:
    """A streaming reader over one CSV file; UTF-8 with or without a byte-order mark."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("rb")
        self._reader = csv.reader(self._lines())
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    def _read_header(self) -> tuple[str, ...]:
        try:
            first = next(self._reader, None)
        except csv.Error as exc:
            raise CsvFileError(f"{self.path.name}: cannot read the header row: {exc}") from exc
        if first is None:
            raise CsvFileError(
                f"{self.path.name}: the file is empty (a header row of field names is needed)"
            )
        return _check_header(self.path, first)

    def __iter__(self) -> Iterator[CsvRow]:
        number = 1
        while True:
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise CsvFileError(
                    f"{self.path.name}: cannot read row {number + 1}: {exc}"
                ) from exc
            number += 1
            # Blank lines keep their number (a spreadsheet shows them) but carry no submission.
            if not cells or all(cell == "" for cell in cells):
                continue
            yield CsvRow(number, tuple(cells))

    def _lines(self) -> Iterator[str]:
        # Decoding line by line (not in the text layer's big chunks) lets an encoding error
        # name the line it is on.
        for line_number, raw in enumerate(self._handle, start=1):
            if line_number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CsvFileError(
                    f"{self.path.name}: line {line_number} is not valid UTF-8 "
                    f"(byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "save the file as UTF-8"
                ) from None

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> CsvReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _check_header(path: Path, cells: list[str]) -> tuple[str, ...]:
    # Spreadsheets often leave stray spaces around header names; field names never have them.
    names = tuple(cell.strip() for cell in cells)
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name:
            raise CsvFileError(f"{path.name}: header column {position} has no name")
        if name in seen:
            raise CsvFileError(
                f"{path.name}: column {name!r} appears twice in the header "
                f"(columns {seen[name]} and {position})"
            )
        seen[name] = position
    return names
