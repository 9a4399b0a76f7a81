"""Coercion and validation of one row against a bot's schema (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from iozen_etl.replay.keys import KEY_PREFIX, REJECTED_PREFIX, content_sha256
from iozen_etl.replay.rows import (
    MAX_BODY_BYTES,
    BotForm,
    CoercionError,
    FieldSpec,
    Prepared,
    Rejected,
    coerce_value,
    prepare_row,
)


@dataclass(frozen=True)
class Item:
    name: str
    type: str | None = "short_text"
    required: bool | None = False
    options: tuple[str, ...] = ()
    kind: str = "field"


FORM = BotForm.from_schema(
    "bot_a",
    [
        Item("welcome", None, None, kind="content"),
        Item("full_name", required=True),
        Item("email", "email", True),
        Item("team_size", "number"),
        Item("start_date", "date"),
        Item("consent", "boolean"),
        Item("priority", "select", None, ("low", "medium", "high")),
        Item("products", "multi_select", False, ("crm", "billing", "a|b")),
        Item("notes", "long_text"),
    ],
)
FORMS: dict[str, BotForm | None] = {"bot_a": FORM, "gone": None}


def spec(type_: str, options: tuple[str, ...] = ()) -> FieldSpec:
    return FieldSpec("f", type_, False, options)


@pytest.mark.parametrize(
    ("type_", "raw", "expected"),
    [
        ("number", "42", 42),
        ("number", " -3.5 ", -3.5),
        ("number", "1e3", 1000.0),
        ("number", ".5", 0.5),
        ("boolean", "TRUE", True),
        ("boolean", "yes", True),
        ("boolean", "Y", True),
        ("boolean", "1", True),
        ("boolean", "t", True),
        ("boolean", "No", False),
        ("boolean", "0", False),
        ("boolean", "F", False),
        ("date", "2026-03-04", "2026-03-04"),
        # year-first with slashes is unambiguous, so it is accepted and normalised
        ("date", "2026/03/04", "2026-03-04"),
        # text keeps the cell exactly, spaces included: they may be meant
        ("short_text", "  Jane  ", "  Jane  "),
        ("email", "jane@example.com", "jane@example.com"),
        # an unknown type is kept as text (docs/decisions.md #17)
        ("signature", "x", "x"),
        ("number", "", None),
        ("boolean", "   ", None),
    ],
)
def test_cells_are_coerced_by_field_type(type_: str, raw: str, expected: object) -> None:
    assert coerce_value(spec(type_), raw) == expected


@pytest.mark.parametrize(
    ("type_", "raw", "reason"),
    [
        ("number", "1,234", "not a number"),  # a thousands or a decimal comma? refuse to guess
        ("number", "nan", "not a number"),
        ("number", "12 kg", "not a number"),
        ("boolean", "maybe", "not a boolean"),
        ("date", "03/04/2026", "use yyyy-mm-dd"),  # day-first or month-first: ambiguous
        ("date", "2026-02-30", "not a calendar date"),
        ("date", "2026-03-04T10:00:00Z", "use yyyy-mm-dd"),
    ],
)
def test_unreadable_cells_name_the_problem_not_the_value(type_: str, raw: str, reason: str) -> None:
    with pytest.raises(CoercionError, match=reason) as caught:
        coerce_value(spec(type_), raw)
    assert raw not in str(caught.value)


def test_select_accepts_an_option_in_any_case_and_sends_its_own_spelling() -> None:
    options = ("low", "High")
    assert coerce_value(spec("select", options), "HIGH") == "High"
    with pytest.raises(CoercionError, match="not one of the options: low, High"):
        coerce_value(spec("select", options), "urgent")


def test_multi_select_reads_pipes_or_a_json_list() -> None:
    options = ("crm", "billing", "a|b")
    assert coerce_value(spec("multi_select", options), "crm | Billing") == ["crm", "billing"]
    # an option holding a pipe can only be written as a JSON list
    assert coerce_value(spec("multi_select", options), '["a|b", "crm"]') == ["a|b", "crm"]
    with pytest.raises(CoercionError, match="empty choice"):
        coerce_value(spec("multi_select", options), "crm||billing")
    with pytest.raises(CoercionError, match="only strings"):
        coerce_value(spec("multi_select", options), "[1, 2]")
    with pytest.raises(CoercionError, match="not a JSON list"):
        coerce_value(spec("multi_select", options), "[crm")


def good_cells(**changes: str) -> dict[str, str]:
    cells = {
        "full_name": "Jane Doe",
        "email": "jane@example.com",
        "team_size": "12",
        "start_date": "2026-07-01",
        "consent": "yes",
        "priority": "High",
        "products": "crm|billing",
        "notes": "",
    }
    cells.update(changes)
    return cells


def test_a_good_row_becomes_the_exact_body_with_a_derived_key() -> None:
    prepared = prepare_row(good_cells(_status="in progress", _is_test="y"), "bot_a", FORMS)
    assert isinstance(prepared, Prepared)
    assert prepared.body == {
        "data": {
            "full_name": "Jane Doe",
            "email": "jane@example.com",
            "team_size": 12,
            "start_date": "2026-07-01",
            "consent": True,
            "priority": "high",
            "products": ["crm", "billing"],
            "notes": None,
        },
        "status": "IN_PROGRESS",
        "is_test": True,
    }
    assert prepared.key == KEY_PREFIX + content_sha256("bot_a", prepared.body)


def test_the_key_follows_the_answers_not_their_spelling() -> None:
    first = prepare_row(good_cells(consent="yes", priority="high"), "bot_a", FORMS)
    same = prepare_row(good_cells(consent="TRUE", priority="HIGH"), "bot_a", FORMS)
    changed = prepare_row(good_cells(team_size="13"), "bot_a", FORMS)
    other_bot = prepare_row(good_cells(), "bot_b", {"bot_b": FORM})
    assert isinstance(first, Prepared) and isinstance(same, Prepared)
    assert isinstance(changed, Prepared) and isinstance(other_bot, Prepared)
    assert first.key == same.key
    assert len({first.key, changed.key, other_bot.key}) == 3


def test_a_given_idempotency_key_wins() -> None:
    prepared = prepare_row(good_cells(_idempotency_key="crm-export-0001"), "bot_a", FORMS)
    assert isinstance(prepared, Prepared)
    assert prepared.key == "crm-export-0001"


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"email": ""}, "email", "required field is empty"),
        ({"email": "jane.example.com"}, "email", "not an email address"),
        ({"team_size": "lots"}, "team_size", "not a number"),
        ({"priority": "urgent"}, "priority", "not one of the options"),
        ({"products": "crm|sales"}, "products", "not one of the options"),
        ({"start_date": "1/7/2026"}, "start_date", "use yyyy-mm-dd"),
        ({"consent": "sure"}, "consent", "not a boolean"),
        ({"_status": "done"}, "_status", "IN_PROGRESS, COMPLETED"),
        ({"_is_test": "perhaps"}, "_is_test", "not a boolean"),
        ({"_idempotency_key": "has space"}, "_idempotency_key", "printable ASCII"),
        ({"_bot_id": "gone"}, "_bot_id", "intake bot not found"),
        ({"welcome": "hi"}, "welcome", "not a field of this row's bot"),
    ],
)
def test_a_bad_row_is_rejected_naming_field_and_reason(
    changes: dict[str, str], field: str, reason: str
) -> None:
    rejected = prepare_row(good_cells(**changes), "bot_a", FORMS)
    assert isinstance(rejected, Rejected)
    assert rejected.field == field
    assert reason in rejected.reason
    assert rejected.key.startswith(REJECTED_PREFIX)


def test_a_required_field_without_a_column_is_named() -> None:
    cells = good_cells()
    del cells["email"]
    rejected = prepare_row(cells, "bot_a", FORMS)
    assert isinstance(rejected, Rejected)
    assert str(rejected.problems[0]) == "email: required field has no column"


def test_required_fields_bind_only_completed_submissions() -> None:
    partial = prepare_row(good_cells(email="", _status="IN_PROGRESS"), "bot_a", FORMS)
    assert isinstance(partial, Prepared)
    assert partial.data["email"] is None


def test_every_problem_of_a_row_is_listed() -> None:
    rejected = prepare_row(good_cells(team_size="x", consent="?", full_name=""), "bot_a", FORMS)
    assert isinstance(rejected, Rejected)
    assert {p.field for p in rejected.problems} == {"team_size", "consent", "full_name"}


def test_a_row_without_any_bot_is_rejected() -> None:
    rejected = prepare_row(good_cells(), None, FORMS)
    assert isinstance(rejected, Rejected)
    assert rejected.field == "_bot_id"


def test_a_body_over_one_megabyte_is_rejected_before_sending() -> None:
    # 'é' is two bytes in UTF-8: the limit is on bytes, not characters
    rejected = prepare_row(good_cells(notes="é" * (MAX_BODY_BYTES // 2)), "bot_a", FORMS)
    assert isinstance(rejected, Rejected)
    assert "the API accepts at most 1,048,576" in rejected.reason
    fits = prepare_row(good_cells(notes="é" * (MAX_BODY_BYTES // 2 - 200)), "bot_a", FORMS)
    assert isinstance(fits, Prepared)
    assert fits.body_bytes <= MAX_BODY_BYTES


def test_the_key_does_not_depend_on_column_order() -> None:
    cells = good_cells()
    reordered = dict(reversed(list(cells.items())))
    first, second = prepare_row(cells, "bot_a", FORMS), prepare_row(reordered, "bot_a", FORMS)
    assert isinstance(first, Prepared) and isinstance(second, Prepared)
    assert first.key == second.key
