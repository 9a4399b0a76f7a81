"""Reading replay CSVs: encodings, header checks and spreadsheet row numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from iozen_etl.replay.csvfile import CsvFileError, CsvReader


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_utf8_with_or_without_bom_reads_the_same(tmp_path: Path, bom: bytes) -> None:
    path = write(tmp_path, bom + "name, email \r\nJosé,j@x.test\r\n".encode())
    with CsvReader(path) as reader:
        assert reader.header == ("name", "email")
        assert [row.cells for row in reader] == [("José", "j@x.test")]


def test_rows_are_numbered_as_a_spreadsheet_shows_them(tmp_path: Path) -> None:
    # A quoted newline stays inside one row; a blank line keeps its number but is skipped.
    path = write(tmp_path, b'name,notes\na,"line one\nline two"\n\nb,x\n')
    with CsvReader(path) as reader:
        assert [(row.number, row.cells[0]) for row in reader] == [(2, "a"), (4, "b")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"name,,email\n", "header column 2 has no name"),
        (b"name,email,name\n", "column 'name' appears twice"),
        (b"name\nok\n\xff\xfe\n", r"row 3, column 1 \('name'\): byte 0xff \(line 3, byte 1\)"),
    ],
)
def test_a_file_that_cannot_be_read_says_why(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(CsvFileError, match=message), CsvReader(path) as reader:
        list(reader)


def test_a_cell_larger_than_the_csv_modules_default_cap_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, b"notes\n" + b"x" * 600_000 + b"\n")
    with CsvReader(path) as reader:
        assert len(next(iter(reader)).cells[0]) == 600_000
