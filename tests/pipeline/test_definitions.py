"""The Definitions load, and each schedule and sensor asks for the right runs."""

from __future__ import annotations

import os
import time

import dagster as dg

from iozen_etl.definitions import defs
from iozen_etl.pipeline.automation import (
    LOAD_RETRY_S,
    WAREHOUSE_HEARTBEAT_S,
    inbox_sensor,
    incremental_sync_schedule,
    new_bots_sensor,
    nightly_reconcile_schedule,
    warehouse_load_request,
    warehouse_sensor,
)
from iozen_etl.pipeline.partitions import (
    BOT_PARTITIONS_NAME,
    CSV_PARTITIONS_NAME,
    RANGE_END_TAG,
    RANGE_START_TAG,
    SYNC_MODE_TAG,
)
from iozen_etl.resources import DataDirResource
from iozen_etl.settings import DataPaths
from tests.support.lake import bot_row, write_lake
from tests.support.warehouse import fetch


def test_definitions_load_with_the_flow_in_groups():
    dg.Definitions.validate_loadable(defs)
    groups = {
        key.to_user_string(): spec.group_name
        for key, spec in ((s.key, s) for s in defs.resolve_all_asset_specs())
    }
    assert groups == {
        "intake_bots": "extract",
        "webhooks": "extract",
        "submissions": "extract",
        "submission_events": "extract",
        "warehouse": "warehouse",
        "submission_replay": "replay",
    }
    for job in ("sync_job", "load_job", "events_job", "replay_job"):
        defs.resolve_job_def(job)
    check_names = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert check_names == {
        "bots_synced",
        "ids_unique",
        "submissions_have_bots",
        "submission_count_parity",
        "schema_drift",
        "sync_freshness",
    }


def test_the_api_key_is_an_env_var_not_a_value():
    resource = defs.resources["iozen_api"]
    assert isinstance(resource.api_key, dg.EnvVar)


def test_schedules_ask_for_one_run_over_every_bot(tmp_path, monkeypatch):
    monkeypatch.setenv("IOZEN_DATA_DIR", str(tmp_path))  # no listing yet: every key counts
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, resources={"data_dir": DataDirResource()}
        )
        first = incremental_sync_schedule.evaluate_tick(context).run_requests
        # Nothing discovered yet: the bot listing alone, which registers the partitions.
        assert len(first) == 1
        assert {key.to_user_string() for key in first[0].asset_selection} == {
            "intake_bots",
            "webhooks",
        }

        instance.add_dynamic_partitions(BOT_PARTITIONS_NAME, ["b1", "b2", "b3"])
        (incremental,) = incremental_sync_schedule.evaluate_tick(context).run_requests
        assert incremental.tags[RANGE_START_TAG] == "b1"
        assert incremental.tags[RANGE_END_TAG] == "b3"
        assert incremental.tags[SYNC_MODE_TAG] == "incremental"
        assert incremental.asset_selection is None  # the whole sync job

        (reconcile,) = nightly_reconcile_schedule.evaluate_tick(context).run_requests
        assert reconcile.tags[SYNC_MODE_TAG] == "reconcile"
        assert reconcile.tags[RANGE_END_TAG] == "b3"


def test_new_bots_sensor_syncs_only_never_synced_bots(tmp_path, monkeypatch):
    monkeypatch.setenv("IOZEN_DATA_DIR", str(tmp_path))  # no listing yet: every key counts
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BOT_PARTITIONS_NAME, ["b1", "b2"])
        context = dg.build_sensor_context(
            instance=instance, definitions=defs, resources={"data_dir": DataDirResource()}
        )
        result = new_bots_sensor.evaluate_tick(context)
        (request,) = result.run_requests
        assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("b1", "b2")

        for key in ("b1", "b2"):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key="submissions", partition=key)
            )
        instance.add_dynamic_partitions(BOT_PARTITIONS_NAME, ["b3", "b4"])
        (request,) = new_bots_sensor.evaluate_tick(context).run_requests
        assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("b3", "b4")
        # The warehouse sensor loads what the run writes.
        assert {k.to_user_string() for k in request.asset_selection} == {"submissions"}


def test_warehouse_sensor_loads_only_after_runs_that_wrote_files(tmp_path, monkeypatch):
    monkeypatch.setenv("IOZEN_DATA_DIR", str(tmp_path))  # an empty lake: no load owed
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, definitions=defs, resources={"data_dir": DataDirResource()}
        )
        assert warehouse_sensor.evaluate_tick(context).run_requests == []
        # A sync step over bots that changed nothing: nothing to load.
        instance.report_runless_asset_event(
            dg.AssetObservation(asset_key="submissions", metadata={"run/lake_files_written": 0})
        )
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="webhooks", metadata={"lake_files_written": 0})
        )
        assert warehouse_sensor.evaluate_tick(context).run_requests == []
        # One that wrote files, then another that did not: the load is still due.
        instance.report_runless_asset_event(
            dg.AssetObservation(asset_key="submissions", metadata={"run/lake_files_written": 4})
        )
        instance.report_runless_asset_event(
            dg.AssetObservation(asset_key="submissions", metadata={"run/lake_files_written": 0})
        )
        (request,) = warehouse_sensor.evaluate_tick(context).run_requests
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="warehouse"))
        assert warehouse_sensor.evaluate_tick(context).run_requests == []
        # New bot schemas after the load: a new load, under a new run key.
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="intake_bots", metadata={"lake_files_written": 2})
        )
        (again,) = warehouse_sensor.evaluate_tick(context).run_requests
        assert again.run_key != request.run_key


def test_an_unchanged_workspace_still_loads_after_the_heartbeat(tmp_path):
    paths = DataPaths(tmp_path)
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="warehouse"))
        now = time.time()
        later = now + WAREHOUSE_HEARTBEAT_S + 1
        # No sync since the load: nothing to say, however old the load.
        assert isinstance(warehouse_load_request(instance, paths, now=later), dg.SkipReason)
        # A sync that wrote nothing: no load now, one once the heartbeat has passed.
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="webhooks", metadata={"lake_files_written": 0})
        )
        assert isinstance(warehouse_load_request(instance, paths, now=now), dg.SkipReason)
        request = warehouse_load_request(instance, paths, now=later)
        assert isinstance(request, dg.RunRequest) and request.run_key.startswith("heartbeat")


def test_a_failed_load_is_tried_again_while_the_lake_holds_what_it_left_out(tmp_path):
    paths = DataPaths(tmp_path)
    write_lake(paths.parquet, "intake_bots", [bot_row("b1", "Intake", 0)])
    # The warehouse folder is a file: the load cannot create its writer file and fails.
    paths.writer_db.parent.write_text("")
    load_job = defs.resolve_job_def("load_job")
    resources = {"data_dir": DataDirResource(path=str(tmp_path))}
    with dg.instance_for_test() as instance:
        failed = load_job.execute_in_process(
            instance=instance, resources=resources, raise_on_error=False
        )
        assert not failed.success
        ended = instance.get_run_record_by_id(failed.run_id).end_time
        # Not at once: a fault that lasts fails one run per interval, not one per tick.
        soon = warehouse_load_request(instance, paths, now=ended + 1)
        assert isinstance(soon, dg.SkipReason)
        retry = warehouse_load_request(instance, paths, now=ended + LOAD_RETRY_S + 1)
        assert isinstance(retry, dg.RunRequest)
        assert retry.run_key == f"retry-after:{failed.run_id}"

        paths.writer_db.parent.unlink()
        assert load_job.execute_in_process(instance=instance, resources=resources).success
        assert fetch(paths, "select id from intake_bots") == [("b1",)]
        done = warehouse_load_request(instance, paths, now=time.time() + LOAD_RETRY_S + 1)
        assert isinstance(done, dg.SkipReason)


def test_inbox_sensor_replays_settled_files_once_each(tmp_path, monkeypatch):
    monkeypatch.setenv("IOZEN_DATA_DIR", str(tmp_path))
    inbox = tmp_path / "inbox"
    (inbox / "bot123").mkdir(parents=True)
    settled = inbox / "bot123" / "leads.csv"
    settled.write_text("full_name\nJane\n")
    top = inbox / "mixed.csv"
    top.write_text("_bot_id,full_name\nb1,Jane\n")
    fresh = inbox / "still-copying.csv"
    fresh.write_text("full_name\n")
    (inbox / "leads.rejects.csv").write_text("_row,_reason\n")
    old = time.time() - 60
    for path in (settled, top, inbox / "leads.rejects.csv"):
        os.utime(path, (old, old))

    with (
        dg.instance_for_test() as instance,
        # The daemon evaluates ticks inside such a context; a bare test must set it up.
        dg.partition_loading_context(dynamic_partitions_store=instance),
    ):
        context = dg.build_sensor_context(
            instance=instance, definitions=defs, resources={"data_dir": DataDirResource()}
        )
        result = inbox_sensor.evaluate_tick(context)
        keys = sorted(request.partition_key for request in result.run_requests)
        assert keys == ["bot123/leads.csv", "mixed.csv"]
        assert sorted(instance.get_dynamic_partitions(CSV_PARTITIONS_NAME)) == keys
        again = inbox_sensor.evaluate_tick(context)
        # Same files, same modification times: the same run keys, which Dagster runs once.
        assert sorted(r.run_key for r in again.run_requests) == sorted(
            r.run_key for r in result.run_requests
        )
