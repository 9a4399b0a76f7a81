"""Pure normalisation: API records in, Arrow tables conforming to ``schemas.LAKE_TABLES`` out.

Nothing here does I/O. The functions take the client's frozen records and build column lists in
one pass, then let Arrow cast the ISO timestamps in bulk, which is what keeps a million
submissions to a few seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iozen_etl.api.models import IntakeBot, Submission, Webhook
from iozen_etl.sync.schemas import (
    INTAKE_BOT_FIELDS,
    INTAKE_BOTS,
    SUBMISSION_ANSWERS,
    SUBMISSIONS,
    TIMESTAMP,
    WEBHOOKS,
)

_encode_json = msgspec.json.Encoder().encode


class NormaliseError(ValueError):
    """A record the lake cannot hold as sent (an unparseable timestamp); names record and field."""

    def __init__(self, table: str, record_id: str | None, field: str, problem: str) -> None:
        super().__init__(f"{table}: record {record_id!r}, field {field!r}: {problem}")
        self.table = table
        self.record_id = record_id
        self.field = field


def _json(value: Mapping[str, Any] | None) -> str | bytes | None:
    """Compact JSON text, or None for an empty object. msgspec writes it in C; what it cannot
    (a lone surrogate, a value that is not JSON) goes the standard library's way. Non-finite
    floats are written as null (valid JSON), which only a lenient decoder could have produced."""
    if not value:
        return None
    try:
        return _encode_json(value)
    except (TypeError, ValueError, UnicodeEncodeError):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (which JSON can carry, UTF-8 cannot): kept as its \u escape, which
        # reads back as the very string that was sent.
        return json.dumps(value, separators=(",", ":"), default=str)
    return text


def _utf8(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, for columns of UTF-8 text (the
    submission's ``data`` keeps the original, escaped)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _texts(values: Sequence[Any] | np.ndarray, mask: Any = None) -> pa.Array:
    """Strings as an Arrow column; lone surrogates (only in answers) become U+FFFD."""
    try:
        return pa.array(values, mask=mask, type=pa.string())
    except UnicodeEncodeError:
        fixed = [_utf8(value) if isinstance(value, str) else value for value in values]
        return pa.array(fixed, mask=mask, type=pa.string())


def timestamps(
    values: Sequence[str | None], *, table: str, field: str, ids: Sequence[str | None]
) -> pa.Array:
    """ISO-8601 strings (with or without milliseconds, ``Z`` or an offset) -> the schema's type."""
    raw = pa.array(values, type=pa.string())
    try:
        return pc.cast(raw, TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        # Finer than milliseconds: parse at full precision, then truncate to the lake's unit.
        fine = pc.cast(raw, pa.timestamp("ns", tz="UTC"))
        return pc.cast(fine, TIMESTAMP, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for index, value in enumerate(values):
        try:
            pc.cast(pa.array([value], type=pa.string()), pa.timestamp("ns", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise NormaliseError(table, ids[index], field, "not an ISO-8601 timestamp") from None
    raise NormaliseError(table, None, field, "timestamps could not be cast")  # pragma: no cover


def _synced_column(synced_at: str, rows: int) -> pa.Array:
    one = timestamps([synced_at], table="synced_at", field="synced_at", ids=[None])
    return pa.repeat(one[0], rows)


def bots_table(bots: Iterable[IntakeBot], synced_at: str) -> pa.Table:
    rows = list(bots)
    ids = [b.id for b in rows]
    columns = [
        pa.array(ids, type=pa.string()),
        pa.array([b.name for b in rows], type=pa.string()),
        pa.array([b.status for b in rows], type=pa.string()),
        pa.array([b.description for b in rows], type=pa.string()),
        pa.array([b.share_url for b in rows], type=pa.string()),
        pa.array([b.submission_count for b in rows], type=pa.int64()),
        timestamps([b.created_at for b in rows], table="intake_bots", field="created_at", ids=ids),
        timestamps([b.updated_at for b in rows], table="intake_bots", field="updated_at", ids=ids),
        pa.array([b.schema_shape for b in rows], type=pa.string()),
        pa.array([_json(b.extra) for b in rows], type=pa.string()),
        _synced_column(synced_at, len(rows)),
    ]
    return pa.Table.from_arrays(columns, schema=INTAKE_BOTS)


def bot_fields_table(bot: IntakeBot) -> pa.Table:
    """The bot's schema items in schema order; content blocks kept and flagged."""
    items = list(bot.schema or ())
    extras: list[str | bytes | None] = []
    for item in items:
        # The content block's body (an author's text or AI prompt) has no column of its own.
        extra = dict(item.extra)
        if item.body is not None:
            extra["body"] = item.body
        extras.append(_json(extra))
    updated = timestamps(
        [bot.updated_at], table="intake_bot_fields", field="bot_updated_at", ids=[bot.id]
    )
    columns = [
        pa.array([bot.id] * len(items), type=pa.string()),
        pa.array(range(len(items)), type=pa.int32()),
        pa.array([i.id for i in items], type=pa.string()),
        pa.array([i.kind for i in items], type=pa.string()),
        pa.array([i.kind == "content" for i in items], type=pa.bool_()),
        pa.array([i.name for i in items], type=pa.string()),
        pa.array([i.label for i in items], type=pa.string()),
        pa.array([i.type for i in items], type=pa.string()),
        pa.array([i.required for i in items], type=pa.bool_()),
        pa.array([list(i.options) for i in items], type=pa.list_(pa.string())),
        pa.array([i.content_type for i in items], type=pa.string()),
        pa.array(extras, type=pa.string()),
        pa.repeat(updated[0], len(items)),
    ]
    return pa.Table.from_arrays(columns, schema=INTAKE_BOT_FIELDS)


def submissions_table(subs: Iterable[Submission], synced_at: str) -> pa.Table:
    return page_tables(subs, synced_at)[0]


class PageTables(NamedTuple):
    submissions: pa.Table
    answers: pa.Table
    answer_kinds: frozenset[tuple[str, str]]  # distinct (field name, value kind) of the answers


def page_tables(subs: Iterable[Submission], synced_at: str) -> PageTables:
    """A page of submissions: one pass builds both tables, sharing the id, bot id and
    ``updated_at`` columns (the timestamps are cast once), and names the answer kinds seen."""
    rows = list(subs)
    ids = [s.id for s in rows]
    id_column = pa.array(ids, type=pa.string())
    bot_column = pa.array([s.intake_bot_id for s in rows], type=pa.string())
    updated = timestamps(
        [s.updated_at for s in rows], table="submissions", field="updated_at", ids=ids
    )
    extras = [s.extra for s in rows]
    columns = [
        id_column,
        bot_column,
        pa.array([s.status for s in rows], type=pa.string()),
        pa.array([s.is_test for s in rows], type=pa.bool_()),
        pa.array([s.ai_summary for s in rows], type=pa.string()),
        pa.array([s.file_count for s in rows], type=pa.int64()),
        pa.array([s.message_count for s in rows], type=pa.int64()),
        pa.array([s.schema_version for s in rows], type=pa.int64()),
        timestamps([s.created_at for s in rows], table="submissions", field="created_at", ids=ids),
        updated,
        pa.array([_json(s.data) or "{}" for s in rows], type=pa.string()),
        # Most records carry no unknown keys: test the page once before a call per row.
        pa.array([_json(e) for e in extras] if any(extras) else [None] * len(rows), pa.string()),
        _synced_column(synced_at, len(rows)),
    ]
    submissions = pa.Table.from_arrays(columns, schema=SUBMISSIONS)
    answers, kinds = _answers(rows, id_column, bot_column, updated)
    return PageTables(submissions, answers, kinds)


# value_kind of an answer by its Python type, as a small code (bool is looked up by type, so never
# taken for an int); any other type (an object, a nested list) is kept as JSON text.
_STRING, _BOOLEAN, _NUMBER, _NULL, _JSON, _LIST = range(6)
_CODES: dict[type, int] = {
    str: _STRING,
    bool: _BOOLEAN,
    int: _NUMBER,
    float: _NUMBER,
    type(None): _NULL,
    list: _LIST,
}
# Inside a list answer, a nested list is one value: JSON text.
_ITEM_CODES = {kind: code for kind, code in _CODES.items() if code != _LIST}
_KIND_NAMES = ("string", "boolean", "number", "null", "json")
_KIND_ARRAY = pa.array(_KIND_NAMES, type=pa.string())


def _codes(values: list[Any], table: Mapping[type, int] = _CODES) -> list[int]:
    # map() over the dict's own get runs in C: no Python frame per answer.
    return list(map(table.get, map(type, values), repeat(_JSON, len(values))))


def _expand_lists(
    values: list[Any], codes: np.ndarray
) -> tuple[np.ndarray, list[Any], np.ndarray, np.ndarray]:
    """One row per item of a list answer (an empty list gives none), position counted from 0.

    Returns, per row, the index of the answer it came from, its value, its position and whether
    it came from a list. The scalar runs between list answers are copied as slices, which keeps
    this cheap when only some answers are lists.
    """
    lists = np.flatnonzero(codes == _LIST)
    sizes = np.ones(len(values), dtype=np.int64)
    sizes[lists] = [len(values[index]) for index in lists.tolist()]
    flat: list[Any] = []
    done = 0
    for index in lists.tolist():
        flat += values[done:index]
        flat += values[index]
        done = index + 1
    flat += values[done:]
    source = np.repeat(np.arange(len(values)), sizes)
    starts = np.cumsum(sizes) - sizes
    positions = np.arange(len(flat)) - np.repeat(starts, sizes)
    listed = np.repeat(codes == _LIST, sizes)
    return source, flat, positions, listed


def _numbers(values: np.ndarray, mask: np.ndarray) -> pa.Array:
    try:
        return pa.array(values, mask=mask, type=pa.float64())
    except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
        # Integers beyond 64 bits: convert one by one (a float keeps their magnitude).
        floats = [None if masked else float(v) for v, masked in zip(values, mask, strict=True)]
        return pa.array(floats, type=pa.float64())


def answers_table(subs: Iterable[Submission]) -> pa.Table:
    """Long form: one row per answer; a list answer gives one row per item (an empty list, none).

    Values land in the column of their kind (text / number / boolean); objects and nested lists
    are kept as JSON text with kind ``json``; a null answer is a row of kind ``null``.
    """
    rows = list(subs)
    ids = [sub.id for sub in rows]
    stamps = timestamps(
        [sub.updated_at for sub in rows], table="submission_answers", field="updated_at", ids=ids
    )
    return _answers(
        rows,
        pa.array(ids, type=pa.string()),
        pa.array([sub.intake_bot_id for sub in rows], type=pa.string()),
        stamps,
    )[0]


def _answers(
    rows: Sequence[Submission], ids: pa.Array, bot_ids: pa.Array, updated: pa.Array
) -> tuple[pa.Table, frozenset[tuple[str, str]]]:
    """The answers of ``rows``: Python only flattens the dicts and looks up each value's type;
    the columns are cut from one object array by masks, in Arrow's C++ (no loop per answer)."""
    datas = [sub.data for sub in rows]
    counts = np.fromiter(map(len, datas), dtype=np.int64, count=len(datas))
    parent = np.repeat(np.arange(len(datas), dtype=np.int32), counts)
    names = _texts([name for data in datas for name in data])
    values: list[Any] = [value for data in datas for value in data.values()]
    codes = np.array(_codes(values), dtype=np.int8)
    positions: pa.Array
    listed: pa.Array
    if (codes == _LIST).any():
        source, values, position_array, listed_array = _expand_lists(values, codes)
        parent = parent[source]
        names = names.take(pa.array(source))
        codes = np.array(_codes(values, _ITEM_CODES), dtype=np.int8)
        positions = pa.array(position_array, type=pa.int32())
        listed = pa.array(listed_array, type=pa.bool_())
    else:
        positions = pa.repeat(pa.scalar(0, pa.int32()), len(values))
        listed = pa.repeat(pa.scalar(False), len(values))
    for index in np.flatnonzero(codes == _JSON).tolist():
        values[index] = json.dumps(values[index], ensure_ascii=False, default=str)
    objects = np.fromiter(values, dtype=object, count=len(values))
    not_text = (codes != _STRING) & (codes != _JSON)
    take = pa.array(parent, type=pa.int32())
    kinds = pa.array(codes, type=pa.int8())
    columns = [
        ids.take(take),
        bot_ids.take(take),
        names,
        positions,
        listed,
        _KIND_ARRAY.take(kinds),
        _texts(objects, not_text),
        _numbers(objects, codes != _NUMBER),
        pa.array(objects, mask=codes != _BOOLEAN, type=pa.bool_()),
        updated.take(take),
    ]
    table = pa.Table.from_arrays(columns, schema=SUBMISSION_ANSWERS)
    # The distinct (name, kind) pairs: a name's dictionary index and its kind code as one key.
    encoded = names.dictionary_encode()
    keys = np.unique(encoded.indices.to_numpy().astype(np.int64) * 8 + codes)
    dictionary = encoded.dictionary.to_pylist()
    return table, frozenset((dictionary[key >> 3], _KIND_NAMES[key & 7]) for key in keys.tolist())


def webhooks_table(hooks: Iterable[Webhook], synced_at: str) -> pa.Table:
    rows = list(hooks)
    ids = [h.id for h in rows]
    columns = [
        pa.array(ids, type=pa.string()),
        pa.array([h.url for h in rows], type=pa.string()),
        pa.array([list(h.events) for h in rows], type=pa.list_(pa.string())),
        pa.array([h.status for h in rows], type=pa.string()),
        pa.array([h.description for h in rows], type=pa.string()),
        timestamps(
            [h.last_delivery_at for h in rows],
            table="webhooks",
            field="last_delivery_at",
            ids=ids,
        ),
        pa.array([h.last_delivery_ok for h in rows], type=pa.bool_()),
        pa.array([h.consecutive_fails for h in rows], type=pa.int64()),
        timestamps([h.created_at for h in rows], table="webhooks", field="created_at", ids=ids),
        timestamps([h.updated_at for h in rows], table="webhooks", field="updated_at", ids=ids),
        pa.array([_json(h.extra) for h in rows], type=pa.string()),
        _synced_column(synced_at, len(rows)),
    ]
    return pa.Table.from_arrays(columns, schema=WEBHOOKS)
