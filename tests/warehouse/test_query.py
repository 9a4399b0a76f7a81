"""Read-only queries, the plain-text table, and the `sql` and `rebuild` commands."""

from __future__ import annotations

import argparse
import datetime as dt
import json

import pytest

from iozen_etl.commands import rebuild as rebuild_command, sql as sql_command
from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import (
    QueryFailed,
    QueryResult,
    WarehouseMissing,
    dataframe,
    format_table,
    load_warehouse,
    run_query,
)
from tests.support.lake import bot_row, submission_row, write_lake, write_submissions


def _run(module: object, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.configure(parser)  # type: ignore[attr-defined]
    code: int = module.run(parser.parse_args(argv))  # type: ignore[attr-defined]
    return code


def _warehouse(paths: DataPaths) -> None:
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "One", 0, submission_count=1)])
    write_submissions(
        paths.parquet, [submission_row("s1", "b1", 1, {"a": "x"})], bot_id="b1", stem="p0"
    )
    load_warehouse(paths)


def test_run_query_returns_columns_and_rows(paths: DataPaths) -> None:
    _warehouse(paths)
    result = run_query(paths, "select id, submission_count from intake_bots")
    assert result == QueryResult(columns=("id", "submission_count"), rows=(("b1", 1),))


def test_run_query_is_read_only_and_names_the_problem(paths: DataPaths) -> None:
    _warehouse(paths)
    with pytest.raises(QueryFailed, match="read-only"):
        run_query(paths, "delete from submissions")
    with pytest.raises(QueryFailed, match="no_such_table"):
        run_query(paths, "select * from no_such_table")
    assert run_query(paths, "select count(*) from submissions").rows == ((1,),)


def test_run_query_without_a_warehouse(paths: DataPaths) -> None:
    with pytest.raises(WarehouseMissing, match="iozen-etl sync"):
        run_query(paths, "select 1")


def test_format_table() -> None:
    result = QueryResult(
        columns=("name", "n", "ok", "at", "tags"),
        rows=(
            ("a\nb", 1, True, dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC), ["x"]),
            ("long" * 20, 10.5, None, None, None),
        ),
    )
    assert format_table(result, max_width=25).splitlines() == [
        "name                      | n    | ok   | at                        | tags",
        "--------------------------+------+------+---------------------------+------",
        "a b                       |    1 | true | 2026-03-01 09:00:00+00:00 | ['x']",
        "longlonglonglonglonglong… | 10.5 | NULL | NULL                      | NULL",
        "(2 rows)",
    ]


def test_sql_command_prints_a_table(
    paths: DataPaths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _warehouse(paths)
    monkeypatch.setenv("IOZEN_DATA_DIR", str(paths.root))
    assert _run(sql_command, ["select id, status from submissions"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["id", "|", "status"]
    assert _run(sql_command, ["selec nonsense"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("iozen-etl sql: Parser Error") and err.count("\n") == 1


def test_sql_command_prints_csv_and_json_whole(
    paths: DataPaths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _warehouse(paths)
    monkeypatch.setenv("IOZEN_DATA_DIR", str(paths.root))
    query = "select id, status, created_at, data, 1.5::decimal(4,2) as d from submissions"
    assert _run(sql_command, ["--format", "csv", query]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header == "id,status,created_at,data,d"
    assert line.startswith("s1,COMPLETED,") and line.endswith(",1.5")
    assert _run(sql_command, ["--format", "json", query]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["id"] == "s1" and record["d"] == 1.5
    assert dt.datetime.fromisoformat(record["created_at"]).tzinfo is not None
    assert json.loads(record["data"]) == {"a": "x"}


def test_a_wrong_query_names_the_table_or_column(
    paths: DataPaths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _warehouse(paths)
    monkeypatch.setenv("IOZEN_DATA_DIR", str(paths.root))
    assert _run(sql_command, ["select * from submission"]) == 1
    assert "submission" in capsys.readouterr().err
    assert _run(sql_command, ["--format", "json", "select statuz from submissions"]) == 1
    err = capsys.readouterr().err
    assert "statuz" in err and err.count("\n") == 1


def test_dataframe_reads_the_published_warehouse(
    paths: DataPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    _warehouse(paths)
    frame = dataframe("select id, intake_bot_id from submissions", paths)
    assert list(frame.columns) == ["id", "intake_bot_id"]
    assert frame.to_dict("records") == [{"id": "s1", "intake_bot_id": "b1"}]
    # The documented one-liner reads $IOZEN_DATA_DIR, and a load goes on while a frame is held.
    monkeypatch.setenv("IOZEN_DATA_DIR", str(paths.root))
    held = dataframe("select count(*) as n from submissions")
    write_submissions(
        paths.parquet, [submission_row("s2", "b1", 2, {"a": "y"})], bot_id="b1", stem="p1"
    )
    load_warehouse(paths)
    assert int(held["n"][0]) == 1
    assert int(dataframe("select count(*) as n from submissions")["n"][0]) == 2
    with pytest.raises(QueryFailed, match="nope"):
        dataframe("select * from nope")


def test_sql_command_without_a_warehouse(
    paths: DataPaths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IOZEN_DATA_DIR", str(paths.root))
    assert _run(sql_command, ["select 1"]) == 2
    assert "no warehouse at" in capsys.readouterr().err


def test_rebuild_command(
    paths: DataPaths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _warehouse(paths)
    monkeypatch.setenv("IOZEN_DATA_DIR", str(paths.root))
    assert _run(rebuild_command, []) == 0
    out = capsys.readouterr().out
    assert "rebuilt" in out and "submissions: 1 rows" in out
