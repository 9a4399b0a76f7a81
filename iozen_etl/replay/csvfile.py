"""Reading a replay CSV: the header and the rows, numbered as a spreadsheet numbers them.

Nothing here interprets a value; coercion against a bot's schema lives in ``rows``. A file that
cannot be read as CSV text stops with ``CsvFileError``, naming the row and column it stops at.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from iozen_etl.replay.formulas import unescape_cell

IDEMPOTENCY_KEY_COLUMN = "_idempotency_key"
STATUS_COLUMN = "_status"
IS_TEST_COLUMN = "_is_test"
BOT_ID_COLUMN = "_bot_id"
RESERVED_COLUMNS = frozenset({IDEMPOTENCY_KEY_COLUMN, STATUS_COLUMN, IS_TEST_COLUMN, BOT_ID_COLUMN})
# The rejects CSV adds these two, so a corrected rejects file can be replayed as it is.
ROW_COLUMN = "_row"
REASON_COLUMN = "_reason"
REJECTS_COLUMNS = (ROW_COLUMN, REASON_COLUMN)

# No cap on a cell: the reader holds a whole line in memory before the csv module sees it, so
# the module's cap (128 KiB by default) would save nothing and would stop the whole file over
# one row. A row too large for the API is rejected on its own, naming its column (``rows``).
csv.field_size_limit(2**31 - 1)
# Old Mac files end lines with a carriage return alone; the csv module wants it as a line end.
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")
# UTF-32 LE's mark starts with UTF-16 LE's, so this catches both.
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_NAME_SHOWN = 60


class CsvFileError(ValueError):
    """The file cannot be replayed at all (encoding, header, unknown column); nothing was sent."""


@dataclass(frozen=True)
class CsvRow:
    """One record; ``number`` is the row a spreadsheet shows (the header is row 1)."""

    number: int
    cells: tuple[str, ...]


class _BadByte(Exception):
    """A byte that is no CSV text: its line, its offset in it, and the record's text before it."""

    def __init__(self, line: int, offset: int, byte: int, before: str) -> None:
        super().__init__(line, offset, byte)
        self.line = line
        self.offset = offset
        self.byte = byte
        self.before = before

    def __str__(self) -> str:
        where = f"byte 0x{self.byte:02x} (line {self.line}, byte {self.offset + 1})"
        if self.byte == 0:
            return f"{where} is a NUL, which no CSV text holds: the file looks binary or UTF-16"
        return f"{where} is not UTF-8; save the file as CSV UTF-8"


class CsvReader:
    """A streaming reader over one CSV file; UTF-8 with or without a byte-order mark.

    A file whose first columns are ``_row`` and ``_reason`` is a rejects file: the escape it puts
    on formula-looking cells (``formulas``) comes off as it is read.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("rb")
        self._record: list[str] = []  # the text read so far of the record being read
        self._at_end = False
        self._unescape = False
        self._reader = csv.reader(self._lines())
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    def _read_header(self) -> tuple[str, ...]:
        first = self._next_record(1, ())
        if first is None:
            raise CsvFileError(
                f"{self.path.name}: the file is empty (a header row of field names is needed)"
            )
        if not any(cell.strip() for cell in first):
            raise CsvFileError(
                f"{self.path.name}: row 1 is blank; the first row must be the header of field names"
            )
        leading = tuple(cell.strip() for cell in first[: len(REJECTS_COLUMNS)])
        self._unescape = leading == REJECTS_COLUMNS
        return _check_header(self.path, self._cells(first))

    def __iter__(self) -> Iterator[CsvRow]:
        number = 1
        while True:
            number += 1
            cells = self._next_record(number, self.header)
            if cells is None:
                return
            # Blank lines keep their number (a spreadsheet shows them) but carry no submission.
            if not cells or all(cell == "" for cell in cells):
                continue
            yield CsvRow(number, self._cells(cells))

    def _next_record(self, number: int, names: tuple[str, ...]) -> list[str] | None:
        """The record that is row ``number`` (None after the last); ``names`` name its columns."""
        self._record.clear()
        try:
            cells = next(self._reader, None)
        except csv.Error as exc:
            raise CsvFileError(f"{self.path.name}: row {number} is not CSV: {exc}") from None
        except _BadByte as bad:
            where = _where(number, _column_at_end(bad.before), names)
            raise CsvFileError(f"{self.path.name}: {where}: {bad}") from None
        if cells is not None and self._at_end:
            # The csv module reads past the last line only from inside a quoted cell.
            raise CsvFileError(
                f"{self.path.name}: {_where(number, len(cells), names)}: a quoted cell opens "
                "and is never closed, so every line after it would be read as this one cell; "
                'close it with " (or remove the opening ")'
            )
        return cells

    def _cells(self, cells: list[str]) -> tuple[str, ...]:
        return tuple(unescape_cell(cell) for cell in cells) if self._unescape else tuple(cells)

    def _lines(self) -> Iterator[str]:
        # Decoding line by line (not in the text layer's big chunks) lets an encoding error
        # name the line it is on.
        for line_number, raw in enumerate(_physical_lines(self._handle), start=1):
            if line_number == 1:
                raw = self._without_bom(raw)
                if not raw:  # a byte-order mark and nothing else: an empty file
                    continue
            text = self._decode(raw, line_number)
            self._record.append(text)
            yield text
        self._at_end = True

    def _without_bom(self, raw: bytes) -> bytes:
        if raw.startswith(codecs.BOM_UTF8):
            return raw[len(codecs.BOM_UTF8) :]
        if raw.startswith(_UTF16_BOMS):
            # Decoding it is not worth a second reading path: spreadsheets save CSV as UTF-8,
            # and their "Unicode text" (UTF-16) is tab-separated, not CSV anyway.
            raise CsvFileError(
                f"{self.path.name}: row 1, column 1: bytes 0x{raw[0]:02x} 0x{raw[1]:02x} are "
                "a UTF-16 byte-order mark: the file is UTF-16, not UTF-8; save it as CSV UTF-8"
            )
        return raw

    def _decode(self, raw: bytes, line_number: int) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            nul = raw.find(b"\x00", 0, exc.start)
            raise self._bad_byte(raw, line_number, exc.start if nul == -1 else nul) from None
        if "\x00" in text:
            raise self._bad_byte(raw, line_number, raw.index(b"\x00"))
        return text

    def _bad_byte(self, raw: bytes, line_number: int, offset: int) -> _BadByte:
        before = "".join(self._record) + raw[:offset].decode("utf-8")
        return _BadByte(line_number, offset, raw[offset], before)

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


def shown_name(name: str) -> str:
    """A column or bot name as an error quotes it: cut short, since a cell may be megabytes."""
    if len(name) <= _NAME_SHOWN:
        return repr(name)
    return f"{name[:_NAME_SHOWN]!r}... ({len(name):,} characters)"


def _physical_lines(handle: IO[bytes]) -> Iterator[bytes]:
    """The file's lines, each ended by \\n, \\r\\n or a lone \\r."""
    for raw in handle:
        if b"\r" in raw:
            yield from (piece for piece in _LONE_CR.split(raw) if piece)
        else:
            yield raw


def _column_at_end(text: str) -> int:
    """The column (from 1) that the end of a record's text falls in."""
    records = list(csv.reader(io.StringIO(text, newline="")))
    return len(records[-1]) if records and records[-1] else 1


def _where(number: int, column: int, names: tuple[str, ...]) -> str:
    name = f" ({shown_name(names[column - 1])})" if 0 < column <= len(names) else ""
    return f"row {number}, column {column}{name}"


def _check_header(path: Path, cells: tuple[str, ...]) -> tuple[str, ...]:
    # Spreadsheets often leave stray spaces around header names; field names never have them.
    names = tuple(cell.strip() for cell in cells)
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name:
            raise CsvFileError(f"{path.name}: header column {position} has no name (row 1)")
        if name in seen:
            raise CsvFileError(
                f"{path.name}: column {shown_name(name)} appears twice in the header "
                f"(row 1, columns {seen[name]} and {position})"
            )
        seen[name] = position
    return names
