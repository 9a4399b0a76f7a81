"""Each asset check passes on good data and fails, for the right reason, on bad data."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import duckdb
import pytest

from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import load_warehouse
from iozen_etl.warehouse.checks import (
    ERROR,
    WARN,
    check_count_parity,
    check_freshness,
    check_schema_drift,
    check_submissions_have_bots,
    check_unique_ids,
    published_connection,
    run_all_checks,
)
from iozen_etl.warehouse.sql_files import apply_sql
from tests.support.lake import (
    at,
    bot_row,
    field_rows,
    submission_row,
    write_lake,
    write_submissions,
)


def _healthy(paths: DataPaths) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 0, submission_count=2)])
    fields = field_rows("b1", 0, [("name", "short_text"), ("age", "number")])
    write_lake(paths.parquet, "intake_bot_fields", fields, bot_id="b1")
    subs = [submission_row(f"s{i}", "b1", i, {"name": "x", "age": i}) for i in (1, 2)]
    write_submissions(paths.parquet, subs, bot_id="b1", stem="p0")
    load_warehouse(paths)


def test_all_checks_pass_on_a_healthy_warehouse(paths: DataPaths) -> None:
    _healthy(paths)
    with published_connection(paths) as con:
        results = run_all_checks(con, max_sync_age=timedelta(hours=1), now=at(30))
    assert [(r.name, r.passed) for r in results] == [
        ("ids_unique", True),
        ("submissions_have_bots", True),
        ("submission_count_parity", True),
        ("schema_drift", True),
        ("sync_freshness", True),
    ]


def test_unique_ids_fails_on_a_duplicate_key() -> None:
    con = duckdb.connect()
    apply_sql(con)
    con.execute("insert into submissions (id, intake_bot_id) values ('s1', 'b1'), ('s1', 'b1')")
    con.execute(
        "insert into submission_answers (submission_id, intake_bot_id, field_name, position)"
        " values ('s1', 'b1', 'a', 0), ('s1', 'b1', 'a', 1)"
    )
    result = check_unique_ids(con)
    assert not result.passed and result.severity == ERROR
    assert result.metadata["duplicate_keys"] == {
        "intake_bots": 0,
        "submissions": 1,
        "webhooks": 0,
        "intake_bot_fields": 0,
        "submission_answers": 0,
    }
    assert result.metadata["examples"] == {"submissions": ["s1"]}


def test_submission_without_its_bot_fails(paths: DataPaths) -> None:
    _healthy(paths)
    write_submissions(
        paths.parquet, [submission_row("s9", "ghost", 1, {})], bot_id="ghost", stem="p0"
    )
    load_warehouse(paths)
    with published_connection(paths) as con:
        result = check_submissions_have_bots(con)
    assert not result.passed and result.severity == ERROR
    assert result.metadata == {"orphan_submissions": 1, "missing_bots": ["ghost"]}


def test_count_parity_names_the_bots_that_differ(paths: DataPaths) -> None:
    _healthy(paths)
    write_lake(
        paths.parquet, "intake_bots", [bot_row("b1", "One", 5, submission_count=3)], stem="p1"
    )
    load_warehouse(paths)
    with published_connection(paths) as con:
        result = check_count_parity(con)
    assert not result.passed and result.severity == WARN
    assert result.metadata["differing"] == [
        {
            "intake_bot_id": "b1",
            "name": "One",
            "api_submission_count": 3,
            "warehouse_submissions": 2,
        }
    ]


def test_schema_drift_type_change_is_an_error_and_is_reported_once(paths: DataPaths) -> None:
    _healthy(paths)
    changed = field_rows("b1", 10, [("name", "short_text"), ("age", "short_text")])
    write_lake(paths.parquet, "intake_bot_fields", changed, bot_id="b1", stem="v2")
    load_warehouse(paths)
    with published_connection(paths) as con:
        result = check_schema_drift(con)
    assert not result.passed and result.severity == ERROR
    assert result.metadata["type_changes"] == [
        {"intake_bot_id": "b1", "field": "age", "from": "number", "to": "short_text"}
    ]
    load_warehouse(paths)  # the next load carries no new schema: nothing to report
    with published_connection(paths) as con:
        assert check_schema_drift(con).passed


def test_schema_drift_new_field_is_a_warning(paths: DataPaths) -> None:
    _healthy(paths)
    added = field_rows("b1", 10, [("name", "short_text"), ("age", "number"), ("city", "url")])
    write_lake(paths.parquet, "intake_bot_fields", added, bot_id="b1", stem="v2")
    load_warehouse(paths)
    with published_connection(paths) as con:
        result = check_schema_drift(con)
    assert not result.passed and result.severity == WARN
    assert result.metadata["new_fields"] == [{"intake_bot_id": "b1", "field": "city"}]
    assert result.metadata["type_changes"] == []


def test_schema_drift_warns_on_answers_to_undeclared_fields(paths: DataPaths) -> None:
    _healthy(paths)
    sub = submission_row("s3", "b1", 3, {"name": "x", "secret_extra": "value"}, synced=60)
    write_submissions(paths.parquet, [sub], bot_id="b1", stem="p1")
    load_warehouse(paths)
    with published_connection(paths) as con:
        result = check_schema_drift(con)
    assert not result.passed and result.severity == WARN
    assert result.metadata["undeclared_answer_fields"] == [
        {"intake_bot_id": "b1", "field": "secret_extra", "submissions": 1}
    ]
    assert "value" not in json.dumps(result.metadata)  # names, never answer values


def test_freshness_uses_the_newest_sync_and_a_configurable_age(paths: DataPaths) -> None:
    _healthy(paths)  # newest synced_at: minute 3
    with published_connection(paths) as con:
        fresh = check_freshness(con, timedelta(minutes=10), now=at(12))
        stale = check_freshness(con, timedelta(minutes=10), now=at(14))
    assert fresh.passed
    assert not stale.passed and stale.metadata["age_seconds"] == 11 * 60
    # A sync that found nothing new still commits its state: that counts as a sync.
    con3 = sqlite3.connect(paths.state_db)
    con3.execute("create table sync_state (stream text, intake_bot_id text, updated_at text)")
    con3.execute("insert into sync_state values ('bots', null, ?)", [at(13).isoformat()])
    con3.commit()
    con3.close()
    load_warehouse(paths)
    with published_connection(paths) as con:
        assert check_freshness(con, timedelta(minutes=10), now=at(14)).passed


@pytest.mark.parametrize("column_type, value", [("integer", 1772355600), ("real", 1772355600.0)])
def test_freshness_reads_unix_seconds_in_sync_state(
    paths: DataPaths, column_type: str, value: float
) -> None:
    paths.root.mkdir(parents=True)
    con3 = sqlite3.connect(paths.state_db)
    con3.execute(f"create table sync_state (stream text, updated_at {column_type})")
    con3.execute("insert into sync_state values ('bots', ?)", [value])
    con3.commit()
    con3.close()
    load_warehouse(paths)
    with published_connection(paths) as con:
        result = check_freshness(con, timedelta(minutes=1), now=at(0))
    assert result.metadata["last_sync_at"] == at(0).isoformat()
    assert result.passed


def test_freshness_fails_when_nothing_was_ever_synced(paths: DataPaths) -> None:
    load_warehouse(paths)
    with published_connection(paths) as con:
        result = check_freshness(con, timedelta(days=1), now=at(0))
    assert not result.passed and result.metadata["last_sync_at"] is None


def test_freshness_counts_only_completed_scans_when_the_sync_records_them(
    paths: DataPaths,
) -> None:
    _healthy(paths)  # rows synced at minute 3
    paths.root.mkdir(parents=True, exist_ok=True)
    con3 = sqlite3.connect(paths.state_db)
    con3.execute(
        "create table sync_state (stream text, intake_bot_id text, completed_at text,"
        " updated_at text not null)"
    )
    # A scan completed at minute 1; a later one stopped half way at minute 20.
    rows = [
        ("submissions", "b1", at(1).isoformat(), at(1).isoformat()),
        ("submissions", "b2", None, at(20).isoformat()),
    ]
    con3.executemany("insert into sync_state values (?, ?, ?, ?)", rows)
    con3.commit()
    con3.close()
    load_warehouse(paths)
    with published_connection(paths) as con:
        result = check_freshness(con, timedelta(minutes=10), now=at(21))
    assert not result.passed
    assert result.metadata["measured_from"] == "sync_state.completed_at"
    assert result.metadata["age_seconds"] == 20 * 60


def test_the_checks_connection_is_read_only_and_memory_bounded(paths: DataPaths) -> None:
    load_warehouse(paths)
    with published_connection(paths) as con:
        limit = con.execute("select current_setting('memory_limit')").fetchone()
        assert limit is not None and limit[0] == "122.0 MiB"  # DuckDB's rendering of 128 MB
        with pytest.raises(duckdb.InvalidInputException, match="read-only"):
            con.execute("create table x (a int)")
