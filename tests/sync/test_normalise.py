from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from iozen_etl.api.models import IntakeBot, SchemaItem, Submission, Webhook
from iozen_etl.sync import normalise
from iozen_etl.sync.schemas import LAKE_TABLES
from tests.support.wire import submission_record

SYNCED = "2026-03-01T00:00:00.000Z"


def item(
    name: str, *, kind: str = "field", type_: str | None = "short_text", **kw: Any
) -> SchemaItem:
    record = SchemaItem(
        id=f"f_{name}",
        kind=kind,
        name=name,
        label=name.title(),
        type=type_,
        required=None,
        options=(),
        content_type=None,
        body=None,
        extra={},
    )
    return replace(record, **kw)


def bot(schema: tuple[SchemaItem, ...] | None = None) -> IntakeBot:
    return IntakeBot(
        id="bot1",
        name="Onboarding",
        status="ACTIVE",
        submission_count=2,
        created_at="2026-01-15T10:30:00.000Z",
        updated_at="2026-02-20T14:22:00.000Z",
        description=None,
        share_url="x7k2",
        schema=schema,
        schema_shape="fields" if schema is not None else None,
        extra={"future": 1},
    )


def ms(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(UTC)


def test_submissions_keep_core_columns_and_whole_data_as_json():
    data = {"full_name": "Jane", "age": 41, "tags": ["a", "b"], "nested": {"k": [1]}}
    table = normalise.submissions_table(
        [submission_record("s1", data, extra={"new_key": True})], SYNCED
    )
    assert table.schema.equals(LAKE_TABLES["submissions"])
    row = table.to_pylist()[0]
    assert json.loads(row["data"]) == data
    assert json.loads(row["extra"]) == {"new_key": True}
    assert row["created_at"] == ms("2026-02-22T11:00:00+00:00")  # no milliseconds in the wire
    assert row["updated_at"] == ms("2026-02-22T11:05:00+00:00")
    assert row["synced_at"] == ms("2026-03-01T00:00:00+00:00")


def test_timestamps_accept_micro_seconds_and_offsets_and_name_a_bad_one():
    stamps = normalise.timestamps(
        ["2026-02-22T11:00:00.123456Z", "2026-02-22T12:00:00.5+01:00"],
        table="t",
        field="f",
        ids=["a", "b"],
    )
    assert stamps.to_pylist() == [
        datetime(2026, 2, 22, 11, 0, 0, 123000, tzinfo=UTC),
        datetime(2026, 2, 22, 11, 0, 0, 500000, tzinfo=UTC),
    ]
    with pytest.raises(normalise.NormaliseError, match=r"record 'bad'.*field 'updated_at'"):
        normalise.submissions_table(
            [submission_record("ok", {}), submission_record("bad", {}, updated="yesterday")], SYNCED
        )


def test_answers_are_long_form_one_row_per_list_item_typed_by_kind():
    data = {
        "name": "Jane",
        "age": 41,
        "ratio": 0.5,
        "ok": True,
        "tags": ["a", "b", 3],
        "none": None,
        "empty": [],
        "obj": {"x": 1},
    }
    table = normalise.answers_table(
        [submission_record("s1", data), submission_record("s2", {"name": "Joe"})]
    )
    assert table.schema.equals(LAKE_TABLES["submission_answers"])
    rows = [
        (
            r["submission_id"],
            r["field_name"],
            r["position"],
            r["is_list"],
            r["value_kind"],
            r["text_value"],
            r["number_value"],
            r["boolean_value"],
        )
        for r in table.to_pylist()
    ]
    assert rows == [
        ("s1", "name", 0, False, "string", "Jane", None, None),
        ("s1", "age", 0, False, "number", None, 41.0, None),
        ("s1", "ratio", 0, False, "number", None, 0.5, None),
        ("s1", "ok", 0, False, "boolean", None, None, True),
        ("s1", "tags", 0, True, "string", "a", None, None),
        ("s1", "tags", 1, True, "string", "b", None, None),
        ("s1", "tags", 2, True, "number", None, 3.0, None),
        ("s1", "none", 0, False, "null", None, None, None),
        ("s1", "obj", 0, False, "json", '{"x": 1}', None, None),
        ("s2", "name", 0, False, "string", "Joe", None, None),
    ]
    assert set(table["intake_bot_id"].to_pylist()) == {"bot1"}
    assert table["submission_updated_at"][0].as_py() == ms("2026-02-22T11:05:00+00:00")


def test_empty_inputs_give_empty_tables_with_the_lake_schema():
    assert normalise.answers_table([]).schema.equals(LAKE_TABLES["submission_answers"])
    assert normalise.submissions_table([], SYNCED).num_rows == 0
    assert normalise.bots_table([], SYNCED).num_rows == 0
    assert normalise.bot_fields_table(bot(())).num_rows == 0


def test_bot_fields_keep_schema_order_and_flag_content_blocks():
    schema = (
        item("full_name", required=True),
        item("intro", kind="content", type_=None, content_type="plain", body="Hello"),
        item("priority", type_="select", options=("low", "high"), extra={"helper_text": "?"}),
    )
    table = normalise.bot_fields_table(bot(schema))
    assert table.schema.equals(LAKE_TABLES["intake_bot_fields"])
    rows = table.to_pylist()
    assert [(r["position"], r["name"], r["is_content"]) for r in rows] == [
        (0, "full_name", False),
        (1, "intro", True),
        (2, "priority", False),
    ]
    assert rows[2]["options"] == ["low", "high"]
    assert json.loads(rows[1]["extra"]) == {"body": "Hello"}
    assert json.loads(rows[2]["extra"]) == {"helper_text": "?"}
    assert rows[0]["bot_updated_at"] == ms("2026-02-20T14:22:00+00:00")


def test_bots_and_webhooks_tables():
    bots = normalise.bots_table([bot((item("a"),))], SYNCED)
    assert bots.schema.equals(LAKE_TABLES["intake_bots"])
    assert bots.to_pylist()[0]["schema_shape"] == "fields"
    assert json.loads(bots.to_pylist()[0]["extra"]) == {"future": 1}
    hook = Webhook(
        id="w1",
        url="https://example.com/h",
        events=("submission.completed",),
        status="active",
        description=None,
        last_delivery_at=None,
        last_delivery_ok=None,
        consecutive_fails=0,
        created_at="2026-02-01T09:00:00.000Z",
        updated_at="2026-02-24T16:30:00.000Z",
        secret="whsec_not_kept",
        extra={},
    )
    hooks = normalise.webhooks_table([hook], SYNCED)
    assert hooks.schema.equals(LAKE_TABLES["webhooks"])
    assert hooks.to_pylist()[0]["events"] == ["submission.completed"]
    assert "whsec_not_kept" not in str(hooks.to_pylist())


def test_conforms_to_schema_for_arbitrary_json_answers():
    values = ["x", 1, 2.5, True, None, ["a", 1, None, ["n"]], {"k": "v"}, 10**30]
    subs = [submission_record(f"s{i}", {f"f{i}": value}) for i, value in enumerate(values)]
    table = normalise.answers_table(subs)
    assert table.num_rows == 11
    assert table.column("value_kind").type == pa.string()


# Any JSON value an answer can hold, nested lists and objects included.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
ANSWERS = st.lists(st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=5), max_size=6)


def _expected_rows(subs: list[Submission]) -> list[tuple[Any, ...]]:
    """The answers rows written the plain way, one answer at a time: the oracle."""
    kinds = {str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    rows = []
    for s in subs:
        for name, value in s.data.items():
            items = list(enumerate(value)) if type(value) is list else [(0, value)]
            for position, one in items:
                kind = kinds.get(type(one), "json")
                text = one if kind == "string" else None
                if kind == "json":
                    text = json.dumps(one, ensure_ascii=False, default=str)
                number = float(one) if kind == "number" else None
                boolean = one if kind == "boolean" else None
                listed = type(value) is list
                rows.append((s.id, name, position, listed, kind, text, number, boolean))
    return rows


@settings(max_examples=150, deadline=None)
@given(ANSWERS)
def test_answers_match_a_row_by_row_reading_for_any_json(datas: list[dict[str, Any]]) -> None:
    subs = [submission_record(f"s{i}", data) for i, data in enumerate(datas)]
    tables = normalise.page_tables(subs, SYNCED)
    columns = ["submission_id", "field_name", "position", "is_list", "value_kind"]
    columns += ["text_value", "number_value", "boolean_value"]
    got = [tuple(r[c] for c in columns) for r in tables.answers.to_pylist()]
    expected = _expected_rows(subs)
    assert got == expected
    assert tables.answer_kinds == frozenset((row[1], row[4]) for row in expected)
    # The whole answers object is kept as JSON text that reads back as what was sent.
    stored = tables.submissions.column("data").to_pylist()
    assert [json.loads(text) for text in stored] == [s.data for s in subs]
