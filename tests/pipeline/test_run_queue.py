"""The run queue of the production instance keeps each workspace's runs in line and lets
different workspaces run at once: runs launched together through ``dagster dev``'s UI endpoint,
dequeued by its daemon into run workers of their own, on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from dagster._core.instance.ref import InstanceRef

from bench.postgres import PostgresDatabase
from iozen_etl.sandbox import SandboxConfig
from tests.pipeline.test_dagster_dev import code_location, dagster_dev
from tests.support.postgres import production_home
from tests.support.workspaces import served_workspaces

LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
LOCATION = "iozen_etl.definitions"


def _launch_listing(url: str, workspace: str) -> str:
    """A run of the workspace's bot listing, as the UI's "Materialize" launches it."""
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": f"{workspace}__sync_job",
            "assetSelection": [
                {"path": [workspace, "intake_bots"]},
                {"path": [workspace, "webhooks"]},
            ],
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "iozen/requested_by", "value": "test"}]},
    }
    answer = httpx.post(
        f"{url}/graphql", json={"query": LAUNCH_RUN, "variables": {"params": params}}, timeout=60
    )
    launched: dict[str, Any] = answer.json()["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return str(launched["run"]["runId"])


def _set_pool_limit(pool: str, home: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    subprocess.run(
        [str(dagster), "instance", "concurrency", "set", pool, "1"],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        check=True,
        capture_output=True,
    )


def _finished(instance: dg.DagsterInstance, run_ids: list[str], timeout_s: float) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
        if len(records) == len(run_ids) and all(r.dagster_run.is_finished for r in records):
            return list(records)
        time.sleep(1)
    raise AssertionError("the queued runs did not finish in time")


@pytest.mark.slow
def test_each_workspace_runs_one_at_a_time_and_workspaces_run_at_once(
    postgres_db: PostgresDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = production_home(tmp_path / "dagster_home", postgres_db, monkeypatch)
    configs = {
        # Slow answers, so that a listing run lasts long enough to overlap another's.
        name: SandboxConfig(seed=seed, bots=3, submissions_per_bot=5, latency_ms=1500)
        for name, seed in (("acme", 21), ("globex", 22))
    }
    data_dir = tmp_path / "data"
    with served_workspaces(configs, tmp_path) as workspaces:
        env = {**workspaces.env(), "IOZEN_API_KEY": None}
        with dagster_dev(home, data_dir, **env) as url:
            code_location(url)
            # As docs/deployment.md asks of a new instance: the queue applies a pool's default
            # limit only from the iteration after the one that first sees the pool.
            for name in workspaces.names():
                _set_pool_limit(f"iozen-{name}", home)
            runs = [_launch_listing(url, name) for name in ("acme", "acme", "globex")]
            instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
            records = {r.dagster_run.run_id: r for r in _finished(instance, runs, 240)}
    assert [records[run].dagster_run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * 3
    span = {run: (records[run].start_time or 0.0, records[run].end_time or 0.0) for run in runs}
    first, second, other = (span[run] for run in runs)
    # acme's two runs share its pool: one ran after the other.
    assert first[1] <= second[0] or second[1] <= first[0]
    # globex has a pool of its own: its run overlapped one of acme's.
    assert any(other[0] < end and start < other[1] for start, end in (first, second))
    # Each listing reached its own workspace's API, with its own key.
    listings = {m.name: m.sandbox.request_count("bots", "GET") for m in workspaces.members}
    assert listings == {"acme": 2, "globex": 1}
