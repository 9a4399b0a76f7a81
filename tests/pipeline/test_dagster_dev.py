"""`dagster dev` starts from the repository's workspace.yaml and dagster.yaml, and its UI lists
the assets, checks, schedules and sensors (asked through its GraphQL endpoint)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

QUERY = """
{
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        schedules { name }
        sensors { name }
        jobs { name }
        assetNodes {
          assetKey { path }
          isPartitioned
          assetChecksOrError { ... on AssetChecks { checks { name } } }
        }
      }
    }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_dagster_dev_serves_the_definitions(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "IOZEN_DATA_DIR": str(tmp_path / "data")}
    env.pop("IOZEN_API_KEY", None)  # the UI must load without a key; only runs need one
    dagster = Path(sys.executable).with_name("dagster")
    process = subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # dagster dev maps SIGTERM to its SIGINT handler; make sure SIGINT is not ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        nodes = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and nodes is None:
            assert process.poll() is None, "dagster dev exited early"
            try:
                answer = httpx.post(f"{url}/graphql", json={"query": QUERY}, timeout=10)
                repos = answer.json()["data"]["repositoriesOrError"]
                nodes = repos.get("nodes") or None
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                time.sleep(1)
        assert nodes, "the UI never listed the code location"
        (repo,) = nodes
        assets = {"/".join(node["assetKey"]["path"]): node for node in repo["assetNodes"]}
        assert set(assets) == {
            "intake_bots",
            "webhooks",
            "submissions",
            "warehouse",
            "submission_replay",
        }
        assert assets["submissions"]["isPartitioned"]
        checks = {c["name"] for c in assets["warehouse"]["assetChecksOrError"]["checks"]}
        assert "submission_count_parity" in checks and "sync_freshness" in checks
        assert {s["name"] for s in repo["schedules"]} == {
            "incremental_sync_schedule",
            "nightly_reconcile_schedule",
        }
        assert {s["name"] for s in repo["sensors"]} == {
            "new_bots_sensor",
            "warehouse_sensor",
            "inbox_sensor",
        }
        assert {"sync_job", "load_job", "replay_job"} <= {j["name"] for j in repo["jobs"]}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
