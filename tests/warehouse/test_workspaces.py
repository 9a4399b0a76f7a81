"""Several workspaces in one warehouse, a schema each: every schema is its own sandbox's
warehouse, exactly as a warehouse of that workspace alone would be, and a workspace's failure
stays its own."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from iozen_etl.api import IozenClient
from iozen_etl.sandbox import Sandbox, SandboxConfig
from iozen_etl.settings import DataPaths
from iozen_etl.sync.state import StateStore
from iozen_etl.warehouse import (
    LoadReport,
    WorkspacesFailed,
    files_owed,
    load_warehouse,
    rebuild_warehouse,
    run_query,
)
from iozen_etl.warehouse.checks import published_connection, run_all_checks
from iozen_etl.warehouse.sql_files import sql_files
from tests.support.lake import at
from tests.support.sandbox import sandbox_clock_client
from tests.support.sync import Workspace
from tests.support.truth import assert_warehouse_equals_truth, truth_submissions
from tests.support.variants import move_world
from tests.support.warehouse import DATA_TABLES, fetch

SEEDS = {"acme": 3, "globex": 5, "initech": 8}


@dataclass
class World:
    """A workspace: its sandbox, and its own paths in the data directory."""

    name: str
    sandbox: Sandbox
    client: IozenClient
    paths: DataPaths

    def sync(self) -> None:
        # The workspace's folder holds its lake and state file as a data directory does.
        Workspace(self.paths.root).sync(self.client)

    def snapshot(self, data_dir: DataPaths) -> dict[str, list[tuple[Any, ...]]]:
        """Every table and view of the schema but the records of the latest load (each load
        writes them), and its wide views, read from the main schema by qualified names."""
        tables = {
            name: fetch(data_dir, f"select * from {self.name}.{name} order by all")
            for name in objects(data_dir, self.name)
            if name not in ("load_runs", "load_changed_submissions")
        }
        views = {
            f"bots.{view}": fetch(data_dir, f"select * from {self.name}_bots.{view} order by all")
            for view in objects(data_dir, f"{self.name}_bots")
        }
        return tables | views


def objects(paths: DataPaths, schema: str) -> list[str]:
    """The tables and views of ``schema`` in the published warehouse."""
    rows = fetch(
        paths,
        "select table_name from duckdb_tables() where schema_name = ?"
        " union all select view_name from duckdb_views() where schema_name = ? and not internal"
        " order by 1",
        [schema, schema],
    )
    return [str(name) for (name,) in rows]


def sql_views() -> set[str]:
    """The analyst views the sql/ files define."""
    names: set[str] = set()
    for path in sql_files():
        names.update(re.findall(r"create or replace view (\w+)", path.read_text()))
    return names


@pytest.fixture
def worlds(paths: DataPaths) -> Iterator[dict[str, World]]:
    """Three workspaces with different seeds, each synced once into its own paths."""
    made = {}
    for name, seed in SEEDS.items():
        sandbox = Sandbox(SandboxConfig(seed=seed, bots=3, submissions_per_bot=60))
        client = sandbox_clock_client(sandbox, seed=seed)
        made[name] = World(name, sandbox, client, paths.for_workspace(name))
        made[name].sync()
    try:
        yield made
    finally:
        for world in made.values():
            world.client.close()


def load_all(paths: DataPaths, worlds: dict[str, World]) -> dict[str, LoadReport]:
    return load_warehouse(paths, workspaces=[w.paths for w in worlds.values()], clock=lambda: at(0))


def test_each_schema_holds_its_own_workspace_and_nothing_else(
    paths: DataPaths, worlds: dict[str, World]
) -> None:
    reports = load_all(paths, worlds)

    assert set(reports) == set(SEEDS)
    for name, world in worlds.items():
        report = reports[name]
        assert report.published and report.mode == "incremental"
        assert report.row_counts["submissions"] == world.sandbox.submission_total()
        assert_warehouse_equals_truth(world.paths, world.sandbox, webhooks=False)
        others = {
            sid
            for other in worlds.values()
            if other is not world
            for sid in truth_submissions(other.sandbox)
        }
        held = {sid for (sid,) in fetch(world.paths, "select id from submissions")}
        assert held and not held & others
        # The mirror of its own state file: streams of its own bots only.
        state = StateStore.read_table(world.paths.state_db, "sync_state")
        assert state is not None
        mirrored = fetch(world.paths, "select distinct intake_bot_id from sync_state")
        assert {bot for (bot,) in mirrored} == set(world.sandbox.bot_ids())
        assert fetch(world.paths, "select count(*) from sync_state") == [(len(state.rows),)]
        # Same bot names in every workspace: the same view names, each in its own schema.
        views = fetch(paths, f"select view_name, intake_bot_id from {name}.wide_views")
        assert {bot for _, bot in views} == set(world.sandbox.bot_ids())
        for view, bot in views:
            count = fetch(paths, f"select count(*) from {name}_bots.{view}")
            assert count == [(len(world.sandbox.truth_submissions(bot)),)]
        assert files_owed(world.paths) == 0
    # The main schema holds no workspace's tables.
    assert objects(paths, "main") == []


def test_every_table_and_view_of_a_schema_equals_a_warehouse_of_that_workspace_alone(
    paths: DataPaths, worlds: dict[str, World]
) -> None:
    load_all(paths, worlds)
    for name, world in worlds.items():
        # The workspace's folder as a data directory of its own: the same lake and state
        # file, loaded the way a single workspace always was (schema main, views in bots).
        alone = DataPaths(world.paths.root)
        load_warehouse(alone, clock=lambda: at(0))
        assert objects(paths, name) == objects(alone, "main")
        assert sql_views() <= set(objects(paths, name))
        # wide_views records the views' definitions, which name the schema: compared below.
        for table in (t for t in objects(alone, "main") if t != "wide_views"):
            # Each query from a fresh read-only connection whose current schema is main.
            in_schema = fetch(paths, f"select * from {name}.{table} order by all")
            assert in_schema == fetch(alone, f"select * from {table} order by all"), table
        # A workspace's wide views name their schema's tables (their definitions say so).
        views = "select view_name, intake_bot_id from wide_views order by all"
        assert fetch(world.paths, views) == fetch(alone, views)
        for view in objects(alone, "bots"):
            in_schema = fetch(paths, f"select * from {name}_bots.{view} order by all")
            assert in_schema == fetch(alone, f"select * from bots.{view} order by all"), view
        # The checks, run in the workspace's schema, find what they find in its warehouse.
        checks = []
        for where in (world.paths, alone):
            with published_connection(where) as con:
                results = run_all_checks(con, max_sync_age=timedelta(days=1), now=at(60))
            checks.append([(r.name, r.passed, r.metadata) for r in results])
        assert checks[0] == checks[1]
        assert [passed for _, passed, _ in checks[0]][:3] == [True, True, True]


def test_a_second_load_changes_only_the_schema_of_the_workspace_that_moved(
    paths: DataPaths, worlds: dict[str, World]
) -> None:
    load_all(paths, worlds)
    before = {name: world.snapshot(paths) for name, world in worlds.items()}
    acme = worlds["acme"]
    move_world(acme.sandbox)
    acme.sync()

    reports = load_all(paths, worlds)

    assert sum(reports["acme"].files_loaded.values()) > 0
    assert reports["acme"].wide_views.created > 0  # a new bot and a new field
    assert_warehouse_equals_truth(acme.paths, acme.sandbox, webhooks=False)
    assert acme.snapshot(paths) != before["acme"]
    for name in ("globex", "initech"):
        assert sum(reports[name].files_loaded.values()) == 0
        assert worlds[name].snapshot(paths) == before[name]
        assert reports[name].load_id == 2  # the load is recorded in every schema


def test_a_workspace_that_fails_is_named_and_the_others_are_published(
    paths: DataPaths, worlds: dict[str, World]
) -> None:
    load_all(paths, worlds)
    acme, globex = worlds["acme"], worlds["globex"]
    globex_before = globex.snapshot(paths)
    for world in (acme, globex):
        move_world(world.sandbox)
        world.sync()
    globex.paths.state_db.write_bytes(b"not a state file " * 512)

    with pytest.raises(WorkspacesFailed) as raised:
        load_all(paths, worlds)

    failed = raised.value
    assert list(failed.failures) == ["globex"]
    assert str(globex.paths.state_db) in failed.failures["globex"]
    assert "globex" in str(failed) and "acme" not in str(failed)
    assert set(failed.loaded) == {"acme", "initech"}
    assert all(report.published for report in failed.loaded.values())
    # Published: acme's new data; globex as it was, its new files still owed.
    assert_warehouse_equals_truth(acme.paths, acme.sandbox, webhooks=False)
    assert globex.snapshot(paths) == globex_before
    assert files_owed(globex.paths) > 0
    assert files_owed(acme.paths) == 0

    # A new state file (the lake is read again from the start) and the next load catches up.
    globex.paths.state_db.unlink()
    globex.sync()
    reports = load_all(paths, worlds)
    assert sum(reports["globex"].files_loaded.values()) > 0
    for world in worlds.values():
        assert_warehouse_equals_truth(world.paths, world.sandbox, webhooks=False)


def test_rebuild_recreates_every_schema_with_the_same_tables(
    paths: DataPaths, worlds: dict[str, World]
) -> None:
    load_all(paths, worlds)
    move_world(worlds["initech"].sandbox)
    worlds["initech"].sync()
    load_all(paths, worlds)

    def compared() -> dict[str, list[tuple[Any, ...]]]:
        rows = {}
        for name in worlds:
            for table in DATA_TABLES:
                rows[f"{name}.{table}"] = fetch(paths, f"select * from {name}.{table} order by all")
            views = f"select view_name, definition from {name}.wide_views order by all"
            rows[f"{name}.wide_views"] = fetch(paths, views)
            for (view,) in fetch(paths, f"select view_name from {name}.wide_views"):
                wide = f"select * from {name}_bots.{view} order by all"
                rows[f"{name}_bots.{view}"] = fetch(paths, wide)
        return rows

    incremental = compared()
    reports = rebuild_warehouse(paths, workspaces=[w.paths for w in worlds.values()])

    assert {name: report.mode for name, report in reports.items()} == dict.fromkeys(
        SEEDS, "rebuild"
    )
    assert compared() == incremental
    # Loads carry on from the rebuilt ledgers.
    again = load_all(paths, worlds)
    assert all(sum(report.files_loaded.values()) == 0 for report in again.values())


# docs/architecture.md's example of every workspace at once.
UNION_OF_WORKSPACES = """
select 'acme' as workspace, * from acme.v_completed_submissions
union all by name
select 'globex' as workspace, * from globex.v_completed_submissions
"""


def test_analysts_query_a_workspace_by_its_schema(
    paths: DataPaths, worlds: dict[str, World]
) -> None:
    load_all(paths, worlds)
    acme = worlds["acme"]
    # What `iozen-etl sql` runs, on the data directory's published file.
    counted = run_query(paths, "select count(*) from acme.submissions")
    assert counted.rows == ((acme.sandbox.submission_total(),),)
    union = run_query(paths, UNION_OF_WORKSPACES)
    workspace, sid = union.columns.index("workspace"), union.columns.index("id")
    labelled = [(row[workspace], row[sid]) for row in union.rows]
    expected = {
        (name, s["id"])
        for name in ("acme", "globex")
        for s in worlds[name].sandbox.truth_submissions()
        if s["status"] == "COMPLETED" and not s["is_test"]
    }
    assert set(labelled) == expected and len(labelled) == len(expected)
    # With a workspace's paths, its schema is the current one: its tables need no prefix.
    assert run_query(acme.paths, "select count(*) from submissions").rows == counted.rows


def test_workspaces_that_would_share_a_schema_are_refused(paths: DataPaths) -> None:
    # acme's wide views would go to acme_bots, the schema of the workspace acme_bots.
    clashing = [paths.for_workspace("acme"), paths.for_workspace("acme_bots")]
    with pytest.raises(ValueError, match="acme_bots"):
        load_warehouse(paths, workspaces=clashing)
    assert not paths.writer_db.exists()
