"""The first pass over a replay file: every check that must pass before any row is sent.

The whole file is read (encoding errors, the set of bots, the row count), each bot's schema is
fetched, and every column is matched to a field, so a bad file stops with ``CsvFileError``
before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from iozen_etl.api import IozenClient
from iozen_etl.api.errors import ResourceNotFound
from iozen_etl.replay.csvfile import (
    BOT_ID_COLUMN,
    REJECTS_COLUMNS,
    RESERVED_COLUMNS,
    CsvFileError,
    CsvReader,
    shown_name,
)
from iozen_etl.replay.rows import BotForm


@dataclass(frozen=True)
class CheckedFile:
    """A file fit to replay: its header, its row count, its bots' forms, the columns skipped.

    ``forms[bot]`` is None for a bot the API does not know (its rows are rejected).
    """

    header: tuple[str, ...]
    rows_total: int
    forms: Mapping[str, BotForm | None]
    ignored_columns: tuple[str, ...]

    @property
    def dropped_columns(self) -> frozenset[str]:
        """Columns left out of every row's cells: the ignored ones and a rejects file's own."""
        return frozenset(self.ignored_columns) | frozenset(REJECTS_COLUMNS)


def check_file(
    client: IozenClient,
    csv_path: Path,
    default_bot: str | None,
    *,
    ignore_unknown_columns: bool,
) -> CheckedFile:
    """Read the whole file and check it against its bots; raises CsvFileError if it cannot go."""
    with CsvReader(csv_path) as reader:
        header = reader.header
        bot_ids, rows_total = _scan(reader)
    if default_bot is None and BOT_ID_COLUMN not in header:
        raise CsvFileError(f"{csv_path.name}: no bot given: pass --bot or add a _bot_id column")
    forms = _fetch_forms(client, csv_path, default_bot, bot_ids)
    ignored = _check_columns(csv_path, header, forms, ignore_unknown_columns)
    return CheckedFile(header, rows_total, forms, tuple(ignored))


def _scan(reader: CsvReader) -> tuple[set[str], int]:
    """The bot ids named in the ``_bot_id`` column, and the number of rows."""
    bot_position = reader.header.index(BOT_ID_COLUMN) if BOT_ID_COLUMN in reader.header else None
    bots: set[str] = set()
    rows = 0
    for row in reader:
        rows += 1
        if bot_position is not None and bot_position < len(row.cells):
            value = row.cells[bot_position].strip()
            if value:
                bots.add(value)
    return bots, rows


def _fetch_forms(
    client: IozenClient, csv_path: Path, default_bot: str | None, bot_ids: set[str]
) -> dict[str, BotForm | None]:
    forms: dict[str, BotForm | None] = {}
    for bot in sorted(bot_ids | ({default_bot} if default_bot else set())):
        try:
            intake_bot = client.get_intake_bot(bot)
        except ResourceNotFound as exc:
            if bot == default_bot:
                raise CsvFileError(
                    f"{csv_path.name}: intake bot {bot!r} not found (request id {exc.request_id})"
                ) from exc
            forms[bot] = None  # its rows are rejected; the other bots' rows go on
            continue
        forms[bot] = BotForm.from_schema(bot, intake_bot.schema or ())
    if not any(forms.values()):
        names = ", ".join(shown_name(bot) for bot in forms)
        raise CsvFileError(f"{csv_path.name}: none of the file's bots exist: {names}")
    return forms


def _check_columns(
    csv_path: Path, header: tuple[str, ...], forms: Mapping[str, BotForm | None], ignore: bool
) -> list[str]:
    """The unknown columns to skip when ``ignore``; otherwise the first one stops the file."""
    known = [form for form in forms.values() if form is not None]
    unknown: list[str] = []
    for column in header:
        if column in RESERVED_COLUMNS or column in REJECTS_COLUMNS:
            continue
        if any(column in form.fields for form in known):
            continue
        if ignore:
            unknown.append(column)
            continue
        blocks = [form.bot_id for form in known if column in form.content_names]
        if blocks:
            raise CsvFileError(
                f"{csv_path.name}: column {shown_name(column)} is a content block of intake bot "
                f"{blocks[0]!r}, which takes no answers (nothing was sent)"
            )
        fields = sorted({name for form in known for name in form.fields})
        raise CsvFileError(
            f"{csv_path.name}: column {shown_name(column)} matches no field of intake bot(s) "
            f"{', '.join(form.bot_id for form in known)} (fields: {', '.join(fields)}); "
            "nothing was sent (use --ignore-unknown-columns to skip it)"
        )
    return unknown
