"""Analyst views from sql/ and the per-bot wide views, on every field type and on drift."""

from __future__ import annotations

import datetime as dt
import re

from iozen_etl.settings import DataPaths
from iozen_etl.sync.schemas import LAKE_TABLES
from iozen_etl.warehouse import load_warehouse
from iozen_etl.warehouse.sql_files import SQL_DIR, sql_files
from tests.support.lake import (
    ALL_FIELD_TYPES,
    bot_row,
    field_rows,
    submission_row,
    write_lake,
    write_submissions,
)
from tests.support.warehouse import fetch

GOOD = {
    "full_name": "Ada Lovelace",
    "notes": "line one\nline two",
    "email": "ada@example.test",
    "phone": "+44 20 7946 0000",
    "website": "https://example.test",
    "employees": 42,
    "start_date": "2026-03-02",
    "newsletter": True,
    "plan": "b",
    "topics": ["a", "c"],
    "attachments": [{"name": "cv.pdf", "url": "https://files.test/cv.pdf"}],
    "utm_source": "ads",
    "location": {"lat": 51.5, "lng": -0.1},
}
# Wrong kinds everywhere a cast could fail, plus a field the schema does not declare.
BAD = {
    "full_name": 12345,
    "employees": "lots",
    "start_date": "next tuesday",
    "newsletter": "maybe",
    "topics": "a",
    "undeclared": "kept in data only",
}


def _describe(paths: DataPaths, view: str) -> dict[str, str]:
    return {str(r[0]): str(r[1]) for r in fetch(paths, f"describe {view}")}


def _bot_with_every_type(paths: DataPaths) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "Customer Onboarding!", 0)])
    fields = field_rows("b1", 0, ALL_FIELD_TYPES, content_at=2)
    write_lake(paths.parquet, "intake_bot_fields", fields, bot_id="b1")
    subs = [
        submission_row("s1", "b1", 1, GOOD, created=1),
        submission_row("s2", "b1", 2, BAD, created=2),
        submission_row("s3", "b1", 3, {}, created=3, status="IN_PROGRESS"),
    ]
    write_submissions(paths.parquet, subs, bot_id="b1", stem="p0")
    load_warehouse(paths)


def test_wide_view_has_one_typed_column_per_field(paths: DataPaths) -> None:
    _bot_with_every_type(paths)
    columns = _describe(paths, "bots.customer_onboarding")
    assert columns == {
        "submission_id": "VARCHAR",
        "status": "VARCHAR",
        "is_test": "BOOLEAN",
        "created_at": "TIMESTAMP WITH TIME ZONE",
        "updated_at": "TIMESTAMP WITH TIME ZONE",
        "full_name": "VARCHAR",
        "notes": "VARCHAR",
        "email": "VARCHAR",
        "phone": "VARCHAR",
        "website": "VARCHAR",
        "employees": "DOUBLE",
        "start_date": "DATE",
        "newsletter": "BOOLEAN",
        "plan": "VARCHAR",
        "topics": "VARCHAR[]",
        "attachments": "VARCHAR[]",
        "utm_source": "VARCHAR",
        "location": "VARCHAR",  # unknown type: text
    }
    rows = fetch(paths, "select * from bots.customer_onboarding order by submission_id")
    good = dict(zip(columns, rows[0], strict=True))
    assert good["full_name"] == "Ada Lovelace"
    assert good["notes"] == "line one\nline two"
    assert good["employees"] == 42.0
    assert good["start_date"] == dt.date(2026, 3, 2)
    assert good["newsletter"] is True
    assert good["topics"] == ["a", "c"]
    assert good["attachments"] is not None and "cv.pdf" in good["attachments"][0]
    assert good["location"] is not None and '"lat"' in good["location"]
    # Bad values become NULLs (never a failing view); a scalar in a list field is a 1-item list.
    bad = dict(zip(columns, rows[1], strict=True))
    assert bad["full_name"] == "12345"
    assert (bad["employees"], bad["start_date"], bad["newsletter"]) == (None, None, None)
    assert bad["topics"] == ["a"]
    assert "undeclared" not in columns
    assert fetch(paths, "select count(*) from submissions where data like '%undeclared%'") == [(1,)]
    empty = dict(zip(columns, rows[2], strict=True))
    assert empty["status"] == "IN_PROGRESS" and empty["topics"] is None


def test_wide_views_follow_schema_drift_and_renames(paths: DataPaths) -> None:
    _bot_with_every_type(paths)
    # A new version: employees becomes text, a field is added, one removed, the bot renamed.
    changed = [(n, "short_text" if n == "employees" else t) for n, t in ALL_FIELD_TYPES]
    changed = [f for f in changed if f[0] != "notes"] + [("Favourite Colour", "select")]
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "Onboarding v2", 10)], stem="p1")
    write_lake(
        paths.parquet, "intake_bot_fields", field_rows("b1", 10, changed), bot_id="b1", stem="v2"
    )
    report = load_warehouse(paths)
    assert (report.wide_views.created, report.wide_views.dropped) == (1, 1)
    views = {
        r[0]
        for r in fetch(paths, "select view_name from duckdb_views() where schema_name = 'bots'")
    }
    assert views == {"onboarding_v2"}
    columns = _describe(paths, "bots.onboarding_v2")
    assert columns["employees"] == "VARCHAR"
    assert columns["favourite_colour"] == "VARCHAR"
    assert "notes" not in columns
    assert fetch(paths, "select employees from bots.onboarding_v2 order by submission_id") == [
        ("42",),
        ("lots",),
        (None,),
    ]
    # A load that changes no schema leaves the views alone.
    assert load_warehouse(paths).wide_views.created == 0


def test_view_names_are_readable_and_unique(paths: DataPaths) -> None:
    bots = [
        bot_row("b1", "Sales Leads", 0, created=0),
        bot_row("b2", "sales-leads", 0, created=5),
        bot_row("b3", "2026 Survey", 0, created=6),
        bot_row("b4", "???", 0, created=7),
    ]
    write_lake(paths.parquet, "intake_bots", bots)
    fields = field_rows("b1", 0, [("status", "short_text"), ("Status!", "number")])
    write_lake(paths.parquet, "intake_bot_fields", fields, bot_id="b1")
    load_warehouse(paths)
    names = fetch(paths, "select view_name, intake_bot_id from wide_views order by intake_bot_id")
    assert names == [
        ("sales_leads", "b1"),
        ("sales_leads_2", "b2"),
        ("bot_2026_survey", "b3"),
        ("bot", "b4"),
    ]
    # A field named like a base column does not shadow it.
    assert list(_describe(paths, "bots.sales_leads"))[5:] == ["status_2", "status_3"]


def test_analyst_views(paths: DataPaths) -> None:
    write_lake(
        paths.parquet,
        "intake_bots",
        [bot_row("b1", "One", 0, submission_count=4), bot_row("b2", "Two", 0, submission_count=1)],
    )
    write_lake(
        paths.parquet,
        "intake_bot_fields",
        field_rows("b1", 0, [("name", "short_text"), ("age", "number")], content_at=0),
        bot_id="b1",
    )
    day1, day2 = 0, 24 * 60
    subs = [
        submission_row("s1", "b1", 1, {"name": "a", "age": 3}, created=day1),
        submission_row("s2", "b1", 2, {"name": " "}, created=day1, status="IN_PROGRESS"),
        submission_row("s3", "b1", 3, {"name": "c"}, created=day2, is_test=True),
        submission_row("s4", "b1", day2 + 5, {"age": None}, created=day2),
    ]
    write_submissions(paths.parquet, subs, bot_id="b1", stem="p0")
    load_warehouse(paths)

    assert fetch(paths, "select id from v_completed_submissions order by id") == [("s1",), ("s4",)]
    per_day = fetch(
        paths,
        "select day, submissions, completed, in_progress, test_submissions"
        " from v_submissions_per_bot_day order by day",
    )
    assert per_day == [(dt.date(2026, 3, 1), 2, 1, 1, 0), (dt.date(2026, 3, 2), 1, 1, 0, 1)]
    fill = fetch(
        paths,
        "select field_name, submissions, answered, fill_rate from v_field_fill_rates"
        " order by position",
    )
    # Blank text and explicit nulls are not answers; test submissions do not count.
    assert fill == [("name", 3, 1, 0.3333), ("age", 3, 1, 0.3333)]
    summary = fetch(
        paths,
        "select intake_bot_id, api_submission_count, submissions, count_matches_api, completed,"
        " in_progress, test_submissions, last_submission_at from v_bot_summary order by 1",
    )
    assert summary[0][:7] == ("b1", 4, 4, True, 3, 1, 1)
    assert summary[0][7] == dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    assert summary[1][:7] == ("b2", 1, 0, False, 0, 0, 0)


def test_sql_files_are_lowercase_one_object_each_and_match_the_lake_schemas(
    paths: DataPaths,
) -> None:
    files = sql_files()
    assert [f.name for f in files] == sorted(f.name for f in SQL_DIR.glob("*.sql"))
    for path in files:
        text = path.read_text()
        code = re.sub(r"'[^']*'|--[^\n]*", "", text)  # string literals and comments aside
        assert code == code.lower(), path.name
        assert len(re.findall(r"\bcreate\b", code)) == 1, path.name
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 0)])
    load_warehouse(paths)
    type_names = {
        "string": "VARCHAR",
        "int64": "BIGINT",
        "int32": "INTEGER",
        "bool": "BOOLEAN",
        "double": "DOUBLE",
        "timestamp[ms, tz=UTC]": "TIMESTAMP WITH TIME ZONE",
        "list<item: string>": "VARCHAR[]",
    }
    for table, schema in LAKE_TABLES.items():
        declared = {f.name: type_names[str(f.type)] for f in schema}
        assert _describe(paths, table) == declared, table
