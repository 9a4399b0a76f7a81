"""Pure normalisation: API records in, Arrow tables conforming to ``schemas.LAKE_TABLES`` out.

Nothing here does I/O. The functions take the client's frozen records and build column lists in
one pass, then let Arrow cast the ISO timestamps in bulk, which is what keeps a million
submissions to a few seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

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


class NormaliseError(ValueError):
    """A record the lake cannot hold as sent (an unparseable timestamp); names record and field."""

    def __init__(self, table: str, record_id: str | None, field: str, problem: str) -> None:
        super().__init__(f"{table}: record {record_id!r}, field {field!r}: {problem}")
        self.table = table
        self.record_id = record_id
        self.field = field


def _json(value: Mapping[str, Any] | None) -> str | None:
    if not value:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


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
    extras: list[str | None] = []
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
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
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
        pa.array([dumps(s.data) for s in rows], type=pa.string()),
        # Most records carry no unknown keys: test the page once before a call per row.
        pa.array([_json(e) for e in extras] if any(extras) else [None] * len(rows), pa.string()),
        _synced_column(synced_at, len(rows)),
    ]
    submissions = pa.Table.from_arrays(columns, schema=SUBMISSIONS)
    answers, kinds = _answers(rows, id_column, bot_column, updated)
    return PageTables(submissions, answers, kinds)


# value_kind of an answer by its Python type (bool is checked by type, so never taken for an int);
# any other type (an object, a nested list) is kept as JSON text.
_KINDS: dict[type, str] = {
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


def _expand_lists(
    parent: list[int], names: list[str], values: list[Any], types: list[type]
) -> tuple[list[int], list[str], list[Any], list[int], list[bool]]:
    """One row per item of a list answer (an empty list gives none), position counted from 0.

    The scalar runs between list answers are copied as slices, which keeps this cheap when
    only a few answers are lists.
    """
    out_parent: list[int] = []
    out_names: list[str] = []
    out_values: list[Any] = []
    out_positions: list[int] = []
    out_listed: list[bool] = []
    done = 0
    for index in [i for i, t in enumerate(types) if t is list]:
        run = index - done
        out_parent += parent[done:index]
        out_names += names[done:index]
        out_values += values[done:index]
        out_positions += [0] * run
        out_listed += [False] * run
        items: list[Any] = values[index]
        count = len(items)
        out_parent += [parent[index]] * count
        out_names += [names[index]] * count
        out_values += items
        out_positions += range(count)
        out_listed += [True] * count
        done = index + 1
    run = len(values) - done
    out_parent += parent[done:]
    out_names += names[done:]
    out_values += values[done:]
    out_positions += [0] * run
    out_listed += [False] * run
    return out_parent, out_names, out_values, out_positions, out_listed


def _numbers(values: list[Any], types: list[type]) -> pa.Array:
    numbers = [v if t is int or t is float else None for v, t in zip(values, types, strict=True)]
    try:
        return pa.array(numbers, type=pa.float64())
    except (OverflowError, pa.ArrowInvalid):
        # Integers beyond 64 bits: convert one by one (a float keeps their magnitude).
        return pa.array([None if v is None else float(v) for v in numbers], type=pa.float64())


def answers_table(subs: Iterable[Submission]) -> pa.Table:
    """Long form: one row per answer; a list answer gives one row per item (an empty list, none).

    Values land in the column of their kind (text / number / boolean); objects and nested lists
    are kept as JSON text with kind ``json``; a null answer is a row of kind ``null``. Built with
    comprehensions over flat lists (not a loop of appends): this runs for every page.
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
    parent = [index for index, sub in enumerate(rows) for _ in sub.data]
    names: list[str] = [name for sub in rows for name in sub.data]
    values: list[Any] = [value for sub in rows for value in sub.data.values()]
    types = list(map(type, values))
    positions: pa.Array
    listed: pa.Array
    if list in types:
        parent, names, values, position_list, list_flags = _expand_lists(
            parent, names, values, types
        )
        types = list(map(type, values))
        positions = pa.array(position_list, type=pa.int32())
        listed = pa.array(list_flags, type=pa.bool_())
    else:
        positions = pa.repeat(pa.scalar(0, pa.int32()), len(values))
        listed = pa.repeat(pa.scalar(False), len(values))
    # map() over the dict's own get runs in C: no Python frame per answer.
    kinds: list[str] = [kind or "json" for kind in map(_KINDS.get, types)]
    texts = [v if t is str else None for v, t in zip(values, types, strict=True)]
    if "json" in kinds:
        texts = [
            json.dumps(v, ensure_ascii=False, default=str) if k == "json" else text
            for v, k, text in zip(values, kinds, texts, strict=True)
        ]
    booleans = [v if t is bool else None for v, t in zip(values, types, strict=True)]
    take = pa.array(parent, type=pa.int32())
    columns = [
        ids.take(take),
        bot_ids.take(take),
        pa.array(names, type=pa.string()),
        positions,
        listed,
        pa.array(kinds, type=pa.string()),
        pa.array(texts, type=pa.string()),
        _numbers(values, types),
        pa.array(booleans, type=pa.bool_()),
        updated.take(take),
    ]
    table = pa.Table.from_arrays(columns, schema=SUBMISSION_ANSWERS)
    return table, frozenset(zip(names, kinds, strict=True))


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
