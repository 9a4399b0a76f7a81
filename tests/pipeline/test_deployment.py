"""The production deployment end to end: several workspaces synced at once into one lake on an
S3-compatible server and one warehouse, on the production Dagster instance on PostgreSQL.

Three sandbox workspaces (their own seeds, keys and plans) and a fourth given a wrong key are
synced by ``iozen-etl sync --workspace`` started together; each good one equals its sandbox in
its own schema, the fourth fails naming itself, and a UI backfill of one workspace's bots
leaves the others' API, lake objects, resume points and schemas as they were.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow.fs as pafs
import pytest

from bench.postgres import PostgresDatabase
from iozen_etl.pipeline.partitions import bot_id_of
from iozen_etl.sandbox import SandboxConfig
from iozen_etl.settings import DataPaths
from tests.support.backfill import run_ui_backfill_in_child
from tests.support.postgres import production_home, with_in_process_launcher
from tests.support.s3 import S3Server, s3_lake, serve_s3
from tests.support.truth import assert_warehouse_equals_truth, warehouse_submissions
from tests.support.workspaces import WRONG_KEY, Workspaces, served_workspaces, sync_in_parallel

CONFIGS = {
    "acme": SandboxConfig(seed=31, bots=5, submissions_per_bot=30, plan="pro"),
    "globex": SandboxConfig(seed=32, bots=4, submissions_per_bot=40, plan="business"),
    "initech": SandboxConfig(seed=33, bots=6, submissions_per_bot=20, plan="pro"),
    "hooli": SandboxConfig(seed=34, bots=2, submissions_per_bot=10),
}
GOOD = ("acme", "globex", "initech")


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with serve_s3(tmp_path / "moto.log") as server:
        yield server


def _objects(s3: S3Server, lake_uri: str, workspace: str) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every object under a workspace's lake prefix."""
    filesystem, root = pafs.FileSystem.from_uri(lake_uri)
    selector = pafs.FileSelector(f"{root}/{workspace}", recursive=True, allow_not_found=True)
    return {
        info.path: (info.size or 0, info.mtime_ns or 0)
        for info in filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File
    }


def _untouched(
    workspaces: Workspaces, data_dir: DataPaths, s3: S3Server, lake_uri: str
) -> dict[str, tuple[object, ...]]:
    """What a backfill of another workspace must leave as it is, for each good workspace."""
    facts: dict[str, tuple[object, ...]] = {}
    for name in GOOD:
        member = workspaces[name]
        paths = member.paths(data_dir)
        facts[name] = (
            member.sandbox.request_count(),
            _objects(s3, lake_uri, name),
            paths.state_db.read_bytes(),
            warehouse_submissions(paths),
        )
    return facts


@pytest.mark.slow
def test_three_workspaces_into_one_s3_lake_and_one_warehouse_on_postgresql(
    postgres_db: PostgresDatabase,
    s3: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = production_home(tmp_path / "dagster_home", postgres_db, monkeypatch)
    lake_uri = s3_lake(s3, "lake", monkeypatch)
    data_dir = DataPaths(tmp_path / "data", lake_uri=lake_uri)
    with served_workspaces(CONFIGS, tmp_path, wrong_key=["hooli"]) as workspaces:
        env = {"IOZEN_DATA_DIR": str(data_dir.root), "IOZEN_LAKE_URI": lake_uri}
        results = sync_in_parallel(workspaces, list(CONFIGS), env)

        for name in GOOD:
            assert results[name].returncode == 0, results[name].stderr
            member = workspaces[name]
            assert_warehouse_equals_truth(member.paths(data_dir), member.sandbox)
            assert _objects(s3, lake_uri, name), f"no lake object of {name}"
        hooli = results["hooli"]
        assert hooli.returncode == 1
        assert "workspace hooli: failed: hooli__intake_bots:" in hooli.stderr
        assert "HTTP 401" in hooli.stderr and "request id" in hooli.stderr
        assert WRONG_KEY not in hooli.stderr + hooli.stdout
        assert not _objects(s3, lake_uri, "hooli")

        # Dagster recorded every workspace's runs in PostgreSQL.
        instance = with_in_process_launcher(home)
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        for name in CONFIGS:
            assert instance.get_runs(dg.RunsFilter(job_name=f"{name}__sync_job"))
        # Each workspace's warehouse asset tells the UI which schema holds it.
        for name in GOOD:
            (load,) = instance.fetch_materializations(
                dg.AssetKey([name, "warehouse"]), limit=1
            ).records
            metadata = load.asset_materialization.metadata if load.asset_materialization else {}
            assert metadata["schema"] == dg.MetadataValue.text(name)

        # A UI backfill of two of acme's bots re-reads those two, and nothing of the others.
        for name, value in {**workspaces.env(), "IOZEN_DATA_DIR": str(data_dir.root)}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("IOZEN_LAKE_URI", lake_uri)
        chosen = instance.get_dynamic_partitions("acme__intake_bot")[:2]
        acme = workspaces["acme"]
        before = _untouched(workspaces, data_dir, s3, lake_uri)
        acme_requests = acme.sandbox.request_count("submissions", "GET")
        result = run_ui_backfill_in_child(home, chosen, asset=("acme", "submissions"))
        assert (result.status, result.runs_succeeded) == ("COMPLETED_SUCCESS", result.runs)
        assert acme.sandbox.request_count("submissions", "GET") >= acme_requests + len(chosen)
        after = _untouched(workspaces, data_dir, s3, lake_uri)
        for name in ("globex", "initech"):
            assert after[name] == before[name], f"the backfill of acme touched {name}"
        # acme's backfilled bots were rescanned into its own prefix; it still equals its API.
        assert {bot_id_of(key) for key in chosen} <= {b["id"] for b in acme.sandbox.truth_bots()}
        assert_warehouse_equals_truth(acme.paths(data_dir), acme.sandbox)

        # The warehouse lost, every workspace's schema comes back from the bucket.
        shutil.rmtree(data_dir.writer_db.parent)
        data_dir.published_db.unlink()
        rebuilt = subprocess.run(
            [sys.executable, "-m", "iozen_etl", "rebuild"],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            check=False,
        )
        assert rebuilt.returncode == 0, rebuilt.stderr
        # hooli never got past its key: its schema is there, and empty.
        assert not warehouse_submissions(workspaces["hooli"].paths(data_dir))
        for name in GOOD:
            assert f"(schema {name})" in rebuilt.stdout
            member = workspaces[name]
            assert_warehouse_equals_truth(member.paths(data_dir), member.sandbox)
