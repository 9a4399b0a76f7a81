"""The sync job end to end (in-process Dagster, sandbox on loopback), checked against the truth."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb

from iozen_etl.definitions import defs
from iozen_etl.pipeline.assets import intake_bots, submissions, warehouse, webhooks
from iozen_etl.pipeline.automation import (
    incremental_sync_schedule,
    load_job,
    new_bots_sensor,
    sync_job,
)
from iozen_etl.pipeline.launch import open_instance, run_sync
from iozen_etl.pipeline.partitions import (
    BOT_PARTITIONS_NAME,
    RECONCILE,
    bot_id_of,
    bot_partition_key,
    range_tags,
)
from iozen_etl.pipeline.reconcile import submissions_held
from iozen_etl.resources import DataDirResource, IozenApiResource
from iozen_etl.sandbox import FaultSpec, Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths
from iozen_etl.sync.lake import Lake


def test_first_sync_then_incremental_matches_the_sandbox(world):
    with dg.DagsterInstance.ephemeral() as instance:
        first = run_sync(defs, instance, say=lambda line: None)
        assert first.success, first.reason
        # First ever sync: one run lists the bots, one syncs the bots it discovered, one loads.
        assert first.runs == 3
        # Each bot's partition key carries its name, then its id.
        assert sorted(instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)) == sorted(
            bot_partition_key(bot["id"], bot["name"]) for bot in world.sandbox.truth_bots()
        )
        assert world.warehouse_submissions() == world.truth_submissions()

        bots = world.sandbox.bot_ids()
        world.sandbox.generate_submissions(bots[0], 130)
        new_bot = world.sandbox.add_bot(name="Late Arrival")
        world.sandbox.generate_submissions(new_bot, 7)

        listings_before = world.sandbox.request_count("bots")
        second = run_sync(defs, instance, say=lambda line: None)
        assert second.success, second.reason
        assert second.runs == 3  # the known bots, the bot this run discovered, the load
        # The first run lists the bots once (its submissions step reuses that listing); the
        # second run, for the new bot alone, has no intake_bots step and lists for itself.
        assert world.sandbox.request_count("bots") - listings_before == 2
        assert world.warehouse_submissions() == world.truth_submissions()
        facts = second.metadata["submissions"]
        assert facts["run/rows_new"] == 7  # the last run's rows: the new bot's
        assert second.metadata["intake_bots"]["partitions_added"] == 1


def test_a_run_over_every_bot_announces_itself_with_one_planned_event(world, monkeypatch):
    # open_instance() sets the Dagster switches of the command line (and the Makefile): the run
    # over N bot partitions writes one planned event, not N, and still materializes all N.
    monkeypatch.delenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", raising=False)
    with open_instance() as instance:
        assert run_sync(defs, instance, say=lambda line: None).success
        bots = instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
        outcome = run_sync(defs, instance, say=lambda line: None)
        assert outcome.success and outcome.runs == 1  # nothing changed: no load either
        (run,) = instance.get_runs(limit=1)
        planned = instance.all_logs(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        )
        submissions = dg.AssetKey("submissions")
        submissions_planned = [e for e in planned if e.dagster_event.asset_key == submissions]
        assert len(bots) > 1 and len(submissions_planned) == 1
        materialized = instance.get_materialized_partitions(dg.AssetKey("submissions"))
        assert materialized == set(bots)


def test_a_bot_deleted_in_iozen_does_not_fail_the_runs_after(world):
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_sync(defs, instance, say=lambda line: None).success
        gone, moved = world.sandbox.bot_ids()[:2]
        kept = set(world.sandbox.submission_ids(gone))
        world.sandbox.delete_bot(gone)
        world.sandbox.generate_submissions(moved, 3)
        outcome = run_sync(defs, instance, say=lambda line: None)
        assert outcome.success, outcome.reason
        assert outcome.metadata["submissions"]["run/bots_missing"] == 1
        # Deletions are not detected: the bot's rows stay; every other bot equals the API.
        seen = world.warehouse_submissions()
        assert kept <= set(seen)
        assert {k: v for k, v in seen.items() if k not in kept} == world.truth_submissions()


def test_sync_of_chosen_bots_by_id(world):
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_sync(defs, instance, say=lambda line: None).success
        first, _, third, *_ = world.sandbox.bot_ids()
        world.sandbox.generate_submissions(first, 4)
        world.sandbox.generate_submissions(third, 2)
        outcome = run_sync(defs, instance, bots=[first, third], say=lambda line: None)
        assert outcome.success, outcome.reason
        # The listing, then a run for each of two bots apart in discovery order (a run takes
        # one range), then the load.
        assert outcome.runs == 4
    assert world.warehouse_submissions() == world.truth_submissions()


def test_sync_of_unknown_bot_fails_with_one_line_reason(world):
    with dg.DagsterInstance.ephemeral() as instance:
        outcome = run_sync(defs, instance, bots=["nope"], say=lambda line: None)
    assert not outcome.success
    assert outcome.reason == "unknown bot id(s): nope"


def test_a_wrong_key_fails_cleanly_and_never_shows_the_key(world, monkeypatch):
    wrong = "iozen_live_" + "x" * 32
    monkeypatch.setenv("IOZEN_API_KEY", wrong)
    with dg.DagsterInstance.ephemeral() as instance:
        outcome = run_sync(defs, instance, say=lambda line: None)
    assert not outcome.success
    assert "authentication_required" in (outcome.reason or "")
    assert wrong not in (outcome.reason or "")


def test_a_sync_stopped_at_the_wait_ceiling_keeps_its_pages_and_resumes(tmp_path, monkeypatch):
    """Injected 429s (a third of the pages) ask for a 1 s wait, which stops a sync whose ceiling
    is 0.2 s; the next sync, with the default ceiling, resumes and matches the truth."""
    sandbox = Sandbox(
        SandboxConfig(
            seed=4,
            bots=5,
            submissions_per_bot=100,
            real_time=True,
            faults=FaultSpec.parse("429=0.3@submissions"),
        )
    )
    server = serve(sandbox)
    monkeypatch.setenv("IOZEN_API_KEY", sandbox.api_key)
    monkeypatch.setenv("IOZEN_BASE_URL", server.base_url)
    monkeypatch.setenv("IOZEN_DATA_DIR", str(tmp_path / "data"))
    impatient = dg.Definitions(
        assets=[intake_bots, webhooks, submissions, warehouse],
        jobs=[sync_job, load_job],
        executor=dg.in_process_executor,
        resources={
            "iozen_api": IozenApiResource(api_key=dg.EnvVar("IOZEN_API_KEY"), max_wait_s=0.2),
            "data_dir": DataDirResource(),
        },
    )
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            stopped = run_sync(impatient, instance, say=lambda line: None)
            assert not stopped.success
            assert "wait ceiling" in (stopped.reason or "")
            resumed = run_sync(defs, instance, say=lambda line: None)
            assert resumed.success, resumed.reason
        published = DataPaths(tmp_path / "data").published_db
        con = duckdb.connect(str(published), read_only=True)
        try:
            rows = dict(con.execute("select id, status from submissions").fetchall())
        finally:
            con.close()
        assert rows == {s["id"]: s["status"] for s in sandbox.truth_submissions()}
    finally:
        server.close()


def test_the_key_appears_in_no_file_log_or_metadata(world, caplog):
    key = world.sandbox.api_key.encode()
    with dg.instance_for_test() as instance, caplog.at_level("DEBUG"):
        outcome = run_sync(defs, instance, say=lambda line: None)
        assert outcome.success, outcome.reason
        assert world.sandbox.api_key not in repr(outcome)
        roots = [world.paths.root, Path(instance.root_directory)]
        files = [p for root in roots for p in root.rglob("*") if p.is_file()]
        assert any(p.suffix == ".duckdb" for p in files) and any(p.suffix == ".db" for p in files)
        leaking = [str(p) for p in files if key in p.read_bytes()]
    assert leaking == []
    assert world.sandbox.api_key not in caplog.text


def _latest(instance, kind, bot):
    """The run id of the newest materialization (or observation) of one bot's partition."""
    keys = instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
    key = next(key for key in keys if bot_id_of(key) == bot)
    records_filter = dg.AssetRecordsFilter(asset_key=submissions.key, asset_partitions=[key])
    fetch = instance.fetch_materializations if kind == "m" else instance.fetch_observations
    records = fetch(records_filter, limit=1).records
    return (records[0].run_id, records[0]) if records else (None, None)


def test_a_run_marks_only_the_bots_that_changed_and_names_the_one_that_failed(world, monkeypatch):
    """On a real instance: after a run over every bot, the changed bot has a new
    materialization with its own facts, unchanged bots keep the one they had, and a bot whose
    files could not be written has an observation naming the error; the next run completes it."""
    monkeypatch.delenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", raising=False)
    with dg.instance_for_test() as instance:
        assert run_sync(defs, instance, say=lambda line: None).success
        first_run = {bot: _latest(instance, "m", bot)[0] for bot in world.sandbox.bot_ids()}
        assert None not in first_run.values()

        changed, broken, *unchanged = world.sandbox.bot_ids()
        world.sandbox.generate_submissions(changed, 3)
        world.sandbox.generate_submissions(broken, 2)
        # The broken bot's lake folder becomes a file: its next write fails with an OSError.
        folder = Lake(world.paths.parquet).path("submissions", broken, "x").parent
        folder.rename(folder.with_name("moved-away"))
        folder.write_text("not a folder")

        outcome = run_sync(defs, instance, say=lambda line: None)
        assert not outcome.success and broken in (outcome.reason or "")
        (sync_run,) = instance.get_runs(filters=dg.RunsFilter(job_name="sync_job"), limit=1)
        events = instance.all_logs(
            sync_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        marked = [
            bot_id_of(e.dagster_event.partition)
            for e in events
            if e.dagster_event.asset_key == submissions.key
        ]
        assert marked == [changed]
        run_id, record = _latest(instance, "m", changed)
        assert run_id == sync_run.run_id
        facts = record.asset_materialization.metadata
        name = next(b["name"] for b in world.sandbox.truth_bots() if b["id"] == changed)
        assert facts["rows_new"].value == 3 and facts["bot"].value == name
        newest = max(s["created_at"] for s in world.sandbox.truth_submissions(changed))
        assert facts["last_submission_at"].value == datetime.fromisoformat(newest).timestamp()
        assert all(_latest(instance, "m", bot)[0] == first_run[bot] for bot in unchanged)
        assert _latest(instance, "m", broken)[0] == first_run[broken]
        failed_run, failure = _latest(instance, "o", broken)
        assert failed_run == sync_run.run_id
        assert failure.asset_observation.metadata["status"].value == "failed"
        assert str(folder) in failure.asset_observation.metadata["error"].value
        # The asset's check names the bot too, where the asset page shows it.
        (verdict,) = [
            e.dagster_event.asset_check_evaluation_data
            for e in instance.all_logs(
                sync_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            )
        ]
        assert not verdict.passed and broken in verdict.metadata["failed"].value

        folder.unlink()
        folder.with_name("moved-away").rename(folder)
        again = run_sync(defs, instance, say=lambda line: None)
        assert again.success, again.reason
        assert _latest(instance, "m", broken)[0] != first_run[broken]
        assert world.warehouse_submissions() == world.truth_submissions()


def test_the_reconcile_rescans_only_the_bots_whose_lake_count_is_off(world):
    """The nightly reconcile compares what the sync wrote (the lake) with the API's counts,
    never the warehouse downstream of it: a bot whose lake file went missing is rescanned."""
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_sync(defs, instance, say=lambda line: None).success
        keys = instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
        lake = Lake(world.paths.parquet)
        short = max(world.sandbox.bot_ids(), key=lambda b: len(world.sandbox.submission_ids(b)))
        for path in lake.path("submissions", short, "x").parent.glob("*.parquet"):
            path.unlink()
        assert submissions_held(lake, short) == 0

        tags = range_tags(keys[0], keys[-1], RECONCILE)
        job = defs.resolve_job_def("sync_job")
        assert job.execute_in_process(instance=instance, tags=tags).success
        (record,) = instance.fetch_observations(dg.AssetKey("submissions"), limit=1).records
        facts = record.asset_observation.metadata
        assert facts["run/bots_rescanned"].value == 1
        (row,) = [r.data for r in facts["run/bots"].value.records if r.data["rescan"]]
        assert row["bot_id"] == short
        assert submissions_held(lake, short) == len(world.sandbox.submission_ids(short))


def test_a_blank_or_unknown_partition_key_stops_neither_the_schedule_nor_the_sensor(world):
    """The UI's "Add partition" dialog accepts an empty name, or any id: the next schedule tick
    and sensor tick remove a blank key, leave out a key no listing has seen (both with a
    warning), and still launch runs that sync every bot."""
    job = defs.resolve_job_def("sync_job")
    with dg.instance_for_test() as instance:
        assert run_sync(defs, instance, say=lambda line: None).success
        bots = instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
        instance.add_dynamic_partitions(BOT_PARTITIONS_NAME, ["", "  ", "ghost__nope"])
        late = world.sandbox.add_bot(name="Late Arrival")
        world.sandbox.generate_submissions(late, 3)

        tick = incremental_sync_schedule.evaluate_tick(
            dg.build_schedule_context(instance=instance, resources={"data_dir": DataDirResource()})
        )
        (request,) = tick.run_requests
        assert request.partition_key_range == dg.PartitionKeyRange(bots[0], bots[-1])
        assert instance.get_dynamic_partitions(BOT_PARTITIONS_NAME) == [*bots, "ghost__nope"]
        assert job.execute_in_process(instance=instance, tags=request.tags).success

        instance.add_dynamic_partitions(BOT_PARTITIONS_NAME, [""])
        context = dg.build_sensor_context(
            instance=instance, definitions=defs, resources={"data_dir": DataDirResource()}
        )
        (request,) = new_bots_sensor.evaluate_tick(context).run_requests
        key = bot_partition_key(late, "Late Arrival")
        assert key == f"late-arrival__{late}"
        assert request.partition_key_range == dg.PartitionKeyRange(key, key)
        selected = job.execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection
        )
        assert selected.success
        assert defs.resolve_job_def("load_job").execute_in_process(instance=instance).success
        assert "" not in instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
    assert world.warehouse_submissions() == world.truth_submissions()


def test_the_warehouse_metadata_is_typed_and_describes_its_columns(world):
    with dg.instance_for_test() as instance:
        assert run_sync(defs, instance, say=lambda line: None).success
        (record,) = instance.fetch_materializations(dg.AssetKey("warehouse"), limit=1).records
        facts = record.asset_materialization.metadata
    columns = {c.name: c for c in facts["dagster/column_schema"].value.columns}
    assert "JSON" in (columns["data"].description or "")
    assert all(column.description for column in columns.values())
    assert facts["dagster/row_count"].value == len(world.truth_submissions())
    tables = {r.data["table"]: r.data for r in facts["tables"].value.records}
    assert tables["submissions"]["rows"] == len(world.truth_submissions())
    assert isinstance(facts["files_loaded"].value, int) and facts["files_loaded"].value > 0
    assert isinstance(facts["seconds_total"].value, float)
