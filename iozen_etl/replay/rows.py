"""Turning one CSV row into a submission body, checked against the bot's schema.

Pure: no I/O. A row becomes either a ``Prepared`` body with its idempotency key, or a
``Rejected`` row listing each problem by field. Reasons never quote a cell's value (answers are
personal data); the rejects CSV beside the input holds the values for whoever fixes the rows.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from iozen_etl.replay.csvfile import (
    BOT_ID_COLUMN,
    IDEMPOTENCY_KEY_COLUMN,
    IS_TEST_COLUMN,
    RESERVED_COLUMNS,
    STATUS_COLUMN,
)
from iozen_etl.replay.keys import body_size, content_sha256, derived_key, rejected_row_key

MAX_BODY_BYTES = 1_048_576
MAX_KEY_LENGTH = 255
SUBMISSION_STATUSES = ("IN_PROGRESS", "COMPLETED")
TRUE_WORDS = frozenset({"true", "yes", "1", "y", "t"})
FALSE_WORDS = frozenset({"false", "no", "0", "n", "f"})
# Plain decimal notation with "." as the separator; thousands separators are refused because
# "1,234" means 1.234 in half of the world's spreadsheets.
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_ISO_DATE = re.compile(r"(\d{4})[-/](\d{2})[-/](\d{2})")
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")


class SchemaItemLike(Protocol):
    """What the replay reads from an ``iozen_etl.api.SchemaItem``."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str | None: ...
    @property
    def required(self) -> bool | None: ...
    @property
    def options(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    required: bool
    options: tuple[str, ...]


@dataclass(frozen=True)
class BotForm:
    """The input fields of one bot, by name; content blocks take no answers."""

    bot_id: str
    fields: Mapping[str, FieldSpec]
    content_names: frozenset[str]

    @classmethod
    def from_schema(cls, bot_id: str, items: Iterable[SchemaItemLike]) -> BotForm:
        fields: dict[str, FieldSpec] = {}
        content: set[str] = set()
        for item in items:
            if item.kind == "content":
                content.add(item.name)
            elif item.kind == "field":
                fields[item.name] = FieldSpec(
                    item.name, item.type or "short_text", bool(item.required), item.options
                )
        return cls(bot_id, fields, frozenset(content))


@dataclass(frozen=True)
class Problem:
    field: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


@dataclass(frozen=True)
class Prepared:
    """A valid row: the exact body to POST and the key every attempt will carry."""

    bot_id: str
    data: Mapping[str, Any]
    status: str | None
    is_test: bool | None
    key: str
    content_sha256: str
    body_bytes: int

    @property
    def body(self) -> dict[str, Any]:
        return submission_body(self.data, self.status, self.is_test)


@dataclass(frozen=True)
class Rejected:
    bot_id: str | None
    key: str  # the ledger's key for this row: derived from its raw cells, never sent
    problems: tuple[Problem, ...]

    @property
    def reason(self) -> str:
        return "; ".join(str(problem) for problem in self.problems)

    @property
    def field(self) -> str | None:
        return self.problems[0].field if self.problems else None


class CoercionError(ValueError):
    """A cell cannot be read as its field's type; the message names no value."""


def submission_body(
    data: Mapping[str, Any], status: str | None, is_test: bool | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"data": dict(data)}
    if status is not None:
        body["status"] = status
    if is_test is not None:
        body["is_test"] = is_test
    return body


def row_cells(
    header: tuple[str, ...], dropped: frozenset[str], cells: tuple[str, ...]
) -> tuple[dict[str, str], Problem | None]:
    """A record's cells by column name, and a problem when it has cells beyond the header."""
    by_name = {
        name: (cells[position] if position < len(cells) else "")
        for position, name in enumerate(header)
        if name not in dropped
    }
    beyond = [i for i in range(len(header), len(cells)) if cells[i].strip()]
    if beyond:
        return by_name, Problem(
            None,
            f"row has {len(cells)} cells but the header has {len(header)} columns "
            f"(column {beyond[0] + 1} has a value and no name)",
        )
    return by_name, None


def prepare_row(
    cells: Mapping[str, str], default_bot_id: str | None, forms: Mapping[str, BotForm | None]
) -> Prepared | Rejected:
    """Coerce and validate one row. ``forms[bot]`` is None for a bot the API does not know."""
    bot_id = cells.get(BOT_ID_COLUMN, "").strip() or default_bot_id
    if not bot_id:
        return _reject(
            None, cells, Problem(BOT_ID_COLUMN, "no bot: the cell is empty and no --bot was given")
        )
    form = forms.get(bot_id)
    if form is None:
        return _reject(bot_id, cells, Problem(BOT_ID_COLUMN, "intake bot not found"))

    data, problems = _answers(form, cells)
    status = _status(cells.get(STATUS_COLUMN, ""), problems)
    # An IN_PROGRESS submission is a partial one: required fields bind only completed ones
    # (the API's default status is COMPLETED).
    if status in (None, "COMPLETED"):
        problems.extend(_missing_required(form, cells, data, problems))
    is_test = _is_test(cells.get(IS_TEST_COLUMN, ""), problems)
    given_key = _given_key(cells.get(IDEMPOTENCY_KEY_COLUMN, ""), problems)
    if problems:
        return _reject(bot_id, cells, *problems)

    body = submission_body(data, status, is_test)
    size = body_size(body)
    if size > MAX_BODY_BYTES:
        # Named by its largest answer: that is the cell to cut.
        sizes = {name: body_size({name: value}) for name, value in data.items()}
        largest = max(sizes, key=lambda name: sizes[name])
        too_large = (
            f"request body is {size:,} bytes; the API accepts at most {MAX_BODY_BYTES:,} "
            f"(this answer alone takes {sizes[largest]:,})"
        )
        return _reject(bot_id, cells, Problem(largest, too_large))
    sha = content_sha256(bot_id, body)
    return Prepared(bot_id, data, status, is_test, given_key or derived_key(sha), sha, size)


def _answers(form: BotForm, cells: Mapping[str, str]) -> tuple[dict[str, Any], list[Problem]]:
    """The field columns coerced to their JSON values, and a problem for each cell that fails."""
    problems: list[Problem] = []
    data: dict[str, Any] = {}
    for column, raw in cells.items():
        if column in RESERVED_COLUMNS or (column not in form.fields and raw.strip() == ""):
            continue
        spec = form.fields.get(column)
        if spec is None:
            problems.append(Problem(column, "not a field of this row's bot"))
            continue
        try:
            data[column] = coerce_value(spec, raw)
        except CoercionError as exc:
            problems.append(Problem(column, str(exc)))
    return data, problems


def coerce_value(spec: FieldSpec, raw: str) -> Any:
    """The JSON value for one cell; an empty cell is null."""
    text = raw.strip()
    if text == "":
        return None
    kind = spec.type
    if kind == "number":
        return _number(text)
    if kind == "boolean":
        return _boolean(text)
    if kind == "date":
        return _date(text)
    if kind == "select":
        return _option(spec, text)
    if kind == "multi_select":
        return [_option(spec, item) for item in _list_items(text)]
    if kind == "email" and "@" not in text.strip("@"):
        raise CoercionError("not an email address")
    # Text-like types (and any type this code does not know) keep the cell as written.
    return raw


def _number(text: str) -> int | float:
    if not _NUMBER.fullmatch(text):
        raise CoercionError("not a number (write digits with '.' as the decimal point)")
    return int(text) if _INTEGER.fullmatch(text) else float(text)


def _boolean(text: str) -> bool:
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise CoercionError("not a boolean (use true/false, yes/no, 1/0, y/n or t/f)")


def _date(text: str) -> str:
    # Only year-first forms: 03/04/2026 is March or April depending on who typed it.
    match = _ISO_DATE.fullmatch(text)
    if match is None:
        raise CoercionError("not a date (use yyyy-mm-dd)")
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3])).isoformat()
    except ValueError as exc:
        raise CoercionError("not a calendar date (use yyyy-mm-dd)") from exc


def _list_items(text: str) -> list[str]:
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CoercionError("starts with '[' but is not a JSON list") from exc
        if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
            raise CoercionError("a JSON list here must hold only strings")
        return [item.strip() for item in parsed]
    items = [item.strip() for item in text.split("|")]
    if any(item == "" for item in items):
        raise CoercionError("has an empty choice between '|' separators")
    return items


def _option(spec: FieldSpec, text: str) -> str:
    if not spec.options or text in spec.options:
        return text
    # Spreadsheet users capitalise freely; the API wants the option's own spelling.
    folded = [option for option in spec.options if option.casefold() == text.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise CoercionError(f"not one of the options: {', '.join(spec.options)}")


def _status(raw: str, problems: list[Problem]) -> str | None:
    text = raw.strip()
    if not text:
        return None
    status = re.sub(r"[\s-]+", "_", text.upper())
    if status not in SUBMISSION_STATUSES:
        problems.append(Problem(STATUS_COLUMN, f"must be one of {', '.join(SUBMISSION_STATUSES)}"))
        return None
    return status


def _is_test(raw: str, problems: list[Problem]) -> bool | None:
    text = raw.strip()
    if not text:
        return None
    try:
        return _boolean(text)
    except CoercionError as exc:
        problems.append(Problem(IS_TEST_COLUMN, str(exc)))
        return None


def _given_key(raw: str, problems: list[Problem]) -> str:
    key = raw.strip()
    if key and not (len(key) <= MAX_KEY_LENGTH and _KEY_CHARS.fullmatch(key)):
        problems.append(
            Problem(
                IDEMPOTENCY_KEY_COLUMN,
                f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters without spaces",
            )
        )
    return key


def _missing_required(
    form: BotForm, cells: Mapping[str, str], data: Mapping[str, Any], problems: Sequence[Problem]
) -> list[Problem]:
    named = {problem.field for problem in problems}
    missing = []
    for spec in form.fields.values():
        if spec.required and data.get(spec.name) in (None, []) and spec.name not in named:
            where = "is empty" if spec.name in cells else "has no column"
            missing.append(Problem(spec.name, f"required field {where}"))
    return missing


def _reject(bot_id: str | None, cells: Mapping[str, str], *problems: Problem) -> Rejected:
    return Rejected(bot_id, rejected_row_key(bot_id, cells), tuple(problems))
