"""Per-bot wide views: one row per submission, one typed column per field of the bot's schema.

They live in the schema ``bots`` under a slug of the bot's name (``bots.customer_onboarding``;
a second bot with the same slug, created later, gets ``_2``); a workspace's, loaded into the
schema ``acme``, in ``acme_bots`` (``acme_bots.customer_onboarding``). Values come from
``v_answer_values`` (sql/400: each answer read as text, number, boolean and date with
``try_cast``), so a bad value is a NULL, never a failed query. Answers to fields the schema
does not declare are not columns; they stay in ``data``.
Only views whose definition changed are recreated, so a load that changes no schema costs little.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb

from iozen_etl.warehouse.sql_files import quoted

BASE_COLUMNS = ("submission_id", "status", "is_test", "created_at", "updated_at")

# The API's field types (docs/decisions.md #17) by the column type of the wide view; anything else,
# including types the API adds later, is text.
_LIST_TYPES = frozenset({"multi_select", "file"})
_NUMBER_TYPES = frozenset({"number"})
_BOOLEAN_TYPES = frozenset({"boolean"})
_DATE_TYPES = frozenset({"date"})


@dataclass(frozen=True)
class WideViewChanges:
    created: int  # new or redefined
    dropped: int
    unchanged: int


def slug(text: str | None, fallback: str) -> str:
    """A lowercase SQL identifier that needs no quoting: letters, digits and underscores."""
    cleaned = re.sub(r"[^a-z0-9]+", "_", (text or "").lower()).strip("_")
    if not cleaned:
        cleaned = fallback
    if cleaned[0].isdigit():
        cleaned = f"{fallback}_{cleaned}"
    return cleaned


def _unique(name: str, taken: set[str]) -> str:
    candidate, counter = name, 2
    while candidate in taken:
        candidate = f"{name}_{counter}"
        counter += 1
    taken.add(candidate)
    return candidate


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def column_type(field_type: str | None) -> str:
    """The DuckDB type a field of this API type gets in a wide view."""
    kind = (field_type or "").lower()
    if kind in _LIST_TYPES:
        return "varchar[]"
    if kind in _NUMBER_TYPES:
        return "double"
    if kind in _BOOLEAN_TYPES:
        return "boolean"
    if kind in _DATE_TYPES:
        return "date"
    return "varchar"


def _field_expression(field_name: str, field_type: str | None) -> str:
    """One aggregate over ``v_answer_values`` (sql/400), typed by the field's API type."""
    match = f"a.field_name = {_literal(field_name)}"
    kind = column_type(field_type)
    if kind == "varchar[]":
        return f"list(a.text order by a.position) filter (where {match} and a.text is not null)"
    if kind == "double":
        return f"max(a.number) filter (where {match} and a.position = 0)"
    if kind == "boolean":
        return f"bool_or(a.flag) filter (where {match} and a.position = 0)"
    if kind == "date":
        return f"max(a.day) filter (where {match} and a.position = 0)"
    # A list sent for a text field is joined rather than cut to its first item.
    return f"string_agg(a.text, ', ' order by a.position) filter (where {match})"


def views_schema_name(schema: str) -> str:
    """The schema holding the wide views of the tables of ``schema``."""
    return "bots" if schema == "main" else f"{schema}_bots"


@dataclass(frozen=True)
class ViewsPlace:
    """Where the wide views of the tables of ``schema`` go, and how their query names those
    tables, as SQL."""

    schema: str

    @property
    def views_schema(self) -> str:
        # main's are as they have always been: its existing views keep their recorded
        # definitions, so no load recreates them.
        name = views_schema_name(self.schema)
        return name if self.schema == "main" else quoted(name)

    @property
    def tables(self) -> str:
        """The prefix of a table name in a view's query. A query run through ``query()``
        resolves its names when it is run, in the reader's current schema (main, for an
        analyst), not in the view's: another schema's views name their tables with it."""
        return "" if self.schema == "main" else f"{quoted(self.schema)}."


def view_definition(
    view_name: str,
    bot_id: str,
    fields: list[tuple[str, str | None]],
    place: ViewsPlace = ViewsPlace("main"),
) -> str:
    """The ``create or replace view`` statement of one bot's wide view.

    The select is stored as one string, run through DuckDB's ``query()``: DuckDB keeps a
    view's parsed query in the catalog, decodes every view whenever the file is opened and
    encodes every view again at each CHECKPOINT, so with a thousand bots a view holding its
    aggregate expressions costs each load (and each analyst's connection) about twice as much
    as this one string. The string is bound, exactly as a view's query is, when the view is
    used.
    """
    taken = set(BASE_COLUMNS)
    selected = ["s.id as submission_id", "s.status", "s.is_test", "s.created_at", "s.updated_at"]
    for field_name, field_type in fields:
        column = _unique(slug(field_name, "field"), taken)
        selected.append(f'{_field_expression(field_name, field_type)} as "{column}"')
    select = (
        f"select {', '.join(selected)}"
        f" from {place.tables}submissions as s left join {place.tables}v_answer_values as a"
        f" on a.submission_id = s.id where s.intake_bot_id = {_literal(bot_id)} group by all"
    )
    return (
        f'create or replace view {place.views_schema}."{view_name}"'
        f" as select * from query({_literal(select)})"
    )


def desired_views(con: duckdb.DuckDBPyConnection, place: ViewsPlace) -> dict[str, tuple[str, str]]:
    """view name -> (bot id, definition) for every bot, from the current schema's tables."""
    bots = con.execute(
        "select id, name from intake_bots order by created_at nulls last, id"
    ).fetchall()
    field_rows = con.execute(
        "select intake_bot_id, name, type from intake_bot_fields"
        " where is_content is not true and name is not null"
        " order by intake_bot_id, position"
    ).fetchall()
    fields: dict[str, list[tuple[str, str | None]]] = {}
    for bot_id, name, field_type in field_rows:
        fields.setdefault(str(bot_id), []).append((str(name), field_type))
    taken: set[str] = set()
    wanted: dict[str, tuple[str, str]] = {}
    for bot_id, bot_name in bots:
        view_name = _unique(slug(bot_name, "bot"), taken)
        wanted[view_name] = (
            str(bot_id),
            view_definition(view_name, str(bot_id), fields.get(str(bot_id), []), place),
        )
    return wanted


def refresh_wide_views(con: duckdb.DuckDBPyConnection) -> WideViewChanges:
    """Create, redefine and drop the current schema's wide views so they match its bots'
    current schemas."""
    place = ViewsPlace(str(con.execute("select current_schema()").fetchall()[0][0]))
    con.execute(f"create schema if not exists {place.views_schema}")
    wanted = desired_views(con, place)
    recorded = {
        str(name): str(definition)
        for name, definition in con.execute(
            "select view_name, definition from wide_views"
        ).fetchall()
    }
    dropped = 0
    for name in recorded.keys() - wanted.keys():
        con.execute(f'drop view if exists {place.views_schema}."{name}"')
        dropped += 1
    created = 0
    for name, (_bot_id, definition) in wanted.items():
        if recorded.get(name) != definition:
            con.execute(definition)
            created += 1
    if created or dropped:
        con.execute("delete from wide_views")
        # Bound as lists: registering an Arrow table makes duckdb import pandas.
        con.execute(
            "insert into wide_views select unnest($1), unnest($2), unnest($3)",
            [
                list(wanted),
                [bot_id for bot_id, _ in wanted.values()],
                [definition for _, definition in wanted.values()],
            ],
        )
    return WideViewChanges(created=created, dropped=dropped, unchanged=len(wanted) - created)


def unchanged_views(con: duckdb.DuckDBPyConnection) -> WideViewChanges:
    """The report of a load that changed no bot or schema: every view is left as it is."""
    count = int(con.execute("select count(*) from wide_views").fetchall()[0][0])
    return WideViewChanges(created=0, dropped=0, unchanged=count)
