"""Several ioZen workspaces from one workspaces file: their Dagster names, their keys, and their
syncs side by side, each exact against its own sandbox, one failing without stopping the
others."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from iozen_etl.definitions import build_definitions, defs
from iozen_etl.resources import IozenApiResource
from iozen_etl.sandbox import SandboxConfig
from iozen_etl.settings import DataPaths
from iozen_etl.workspaces import Workspace
from tests.support.truth import assert_warehouse_equals_truth, warehouse_submissions
from tests.support.workspaces import (
    WRONG_KEY,
    Workspaces,
    served_workspaces,
    sync_in_parallel,
)

ACME = Workspace("acme", "IOZEN_KEY_ACME")
GLOBEX = Workspace("globex", "IOZEN_KEY_GLOBEX", "https://globex.example/api/v1", 7)
EXTRACT = ["intake_bots", "webhooks", "submissions", "submission_events"]


def test_each_workspace_of_a_file_has_its_own_names_pool_and_key() -> None:
    definitions = build_definitions([ACME, GLOBEX])
    repository = definitions.get_repository_def()
    graph = repository.asset_graph
    for workspace in (ACME, GLOBEX):
        name = workspace.name
        keys = {dg.AssetKey([name, asset]) for asset in [*EXTRACT, "warehouse"]}
        assert keys <= graph.get_all_asset_keys()
        for key in keys:
            node = graph.get(key)
            assert node.group_name == name
            assert node.pools == {f"iozen-{name}"}
        submissions = graph.get(dg.AssetKey([name, "submissions"]))
        assert submissions.partitions_def == dg.DynamicPartitionsDefinition(
            name=f"{name}__intake_bot"
        )
        assert repository.get_job(f"{name}__sync_job")
        assert repository.has_sensor_def(f"{name}__warehouse_sensor")
        assert repository.has_schedule_def(f"{name}__incremental_sync_schedule")
        checks = {key.name for key in graph.asset_check_keys if key.asset_key.path[0] == name}
        assert {"bots_synced", "ids_unique", "submission_count_parity"} <= checks
    # Each workspace's API resource reads its own variable, and only its steps require it.
    resources = definitions.resources or {}
    acme_api = resources["iozen_api_acme"]
    globex_api = resources["iozen_api_globex"]
    assert isinstance(acme_api, IozenApiResource) and isinstance(globex_api, IozenApiResource)
    assert acme_api.api_key == dg.EnvVar("IOZEN_KEY_ACME")
    assert globex_api.api_key == dg.EnvVar("IOZEN_KEY_GLOBEX")
    assert (globex_api.base_url, globex_api.in_progress_refresh_limit) == (
        "https://globex.example/api/v1",
        7,
    )
    for name in ("acme", "globex"):
        other = "globex" if name == "acme" else "acme"
        for asset in EXTRACT:
            required = graph.get(dg.AssetKey([name, asset])).assets_def.required_resource_keys
            assert f"iozen_api_{name}" in required
            assert f"iozen_api_{other}" not in required


def test_the_workspace_of_the_environment_keeps_its_names() -> None:
    repository = defs.get_repository_def()
    assert {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()} == {
        *EXTRACT,
        "warehouse",
        "submission_replay",
    }
    assert repository.asset_graph.get(dg.AssetKey("submissions")).pools == {"iozen"}
    assert {job.name for job in repository.get_all_jobs()} >= {
        "sync_job",
        "load_job",
        "events_job",
        "replay_job",
    }


def test_three_workspaces_sync_side_by_side_and_a_wrong_key_stops_only_its_own(
    tmp_path: Path,
) -> None:
    configs = {
        "acme": SandboxConfig(seed=11, bots=4, submissions_per_bot=30, plan="pro"),
        "globex": SandboxConfig(seed=12, bots=6, submissions_per_bot=20),
        "initech": SandboxConfig(seed=13, bots=3, submissions_per_bot=40, plan="pro"),
        "hooli": SandboxConfig(seed=14, bots=2, submissions_per_bot=10),
    }
    data_dir = DataPaths(tmp_path / "data")
    with served_workspaces(configs, tmp_path, wrong_key=["hooli"]) as workspaces:
        env = {"IOZEN_DATA_DIR": str(data_dir.root)}
        results = sync_in_parallel(workspaces, list(configs), env)

        for name in ("acme", "globex", "initech"):
            assert results[name].returncode == 0, results[name].stderr
            member = workspaces[name]
            assert_warehouse_equals_truth(member.paths(data_dir), member.sandbox)
        hooli = results["hooli"]
        assert hooli.returncode == 1
        assert "workspace hooli: failed:" in hooli.stderr
        assert "401" in hooli.stderr or "key" in hooli.stderr.lower()
        assert WRONG_KEY not in hooli.stderr + hooli.stdout
        # Keys never cross: each sandbox saw its own key only (any other is refused with 401,
        # and would have failed that workspace's sync).
        for member in workspaces.members:
            assert member.sandbox.request_count("bots", "GET") >= 1
        # Nothing of one workspace in another's schema.
        ids = {
            name: set(warehouse_submissions(workspaces[name].paths(data_dir)))
            for name in ("acme", "globex", "initech")
        }
        assert not ids["acme"] & ids["globex"] and not ids["acme"] & ids["initech"]


def _command(workspaces: Workspaces, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **workspaces.env()}
    env.pop("IOZEN_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "iozen_etl", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_commands_act_on_the_workspace_they_are_told(tmp_path: Path) -> None:
    configs = {
        "acme": SandboxConfig(seed=41, bots=2, submissions_per_bot=5),
        "globex": SandboxConfig(seed=42, bots=2, submissions_per_bot=5),
    }
    with served_workspaces(configs, tmp_path) as workspaces:
        made = _command(
            workspaces,
            "webhooks",
            "--workspace",
            "globex",
            "create",
            "https://hooks.example/x",
            "--events",
            "submission.completed",
            "--secret-file",
            str(tmp_path / "secret"),
        )
        assert made.returncode == 0, made.stderr
        assert [h["url"] for h in workspaces["globex"].sandbox.truth_webhooks()] == [
            "https://hooks.example/x"
        ]
        assert not workspaces["acme"].sandbox.truth_webhooks()
        listed = _command(workspaces, "webhooks", "--workspace", "acme", "list")
        assert (listed.returncode, listed.stdout.strip()) == (0, "no webhook endpoints")

        unnamed = _command(workspaces, "webhooks", "list")
        assert unnamed.returncode == 2
        assert "names several: choose one (acme, globex)" in unnamed.stderr
        unknown = _command(workspaces, "replay", "--workspace", "umbrella", "x.csv")
        assert unknown.returncode == 2
        assert "unknown workspace 'umbrella'; known: acme, globex" in unknown.stderr
        unknown = _command(workspaces, "sync", "--workspace", "acme", "--workspace", "umbrella")
        assert unknown.returncode == 2
        assert "unknown workspace 'umbrella'; known: acme, globex" in unknown.stderr


# The other layout docs/deployment.md describes: one code location per workspace, each loading
# that workspace's definitions alone (its own code server, say, one per workspace on Kubernetes).
LOCATION_FILE = """
from iozen_etl.definitions import build_definitions
from iozen_etl.workspaces import load_workspaces

defs = build_definitions([w for w in load_workspaces() if w.name == "{name}"])
"""


@pytest.mark.slow
def test_one_code_location_per_workspace_also_loads(tmp_path: Path) -> None:
    lines = ["load_from:"]
    for name in ("acme", "globex"):
        (tmp_path / f"{name}.py").write_text(LOCATION_FILE.format(name=name), encoding="utf-8")
        lines.append(f"  - python_file: {{relative_path: {name}.py, location_name: {name}}}")
    (tmp_path / "workspace.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "workspaces.toml").write_text(
        '[workspaces.acme]\napi_key_env = "K_ACME"\n'
        '[workspaces.globex]\napi_key_env = "K_GLOBEX"\n',
        encoding="utf-8",
    )
    (tmp_path / "home").mkdir()
    env = {
        **os.environ,
        "IOZEN_WORKSPACES_FILE": str(tmp_path / "workspaces.toml"),
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    dagster = Path(sys.executable).with_name("dagster")
    validated = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert validated.returncode == 0, validated.stderr[-2000:]
    assert "All code locations passed validation" in validated.stderr + validated.stdout
