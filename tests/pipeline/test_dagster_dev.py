"""`dagster dev` starts from the repository's workspace.yaml and dagster.yaml, and its UI lists
the assets, checks, schedules and sensors (asked through its GraphQL endpoint)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from iozen_etl.definitions import defs
from iozen_etl.pipeline.launch import run_sync
from iozen_etl.pipeline.partitions import bot_partition_key

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


def new_dagster_home(parent: Path) -> Path:
    """An empty instance with the repository's dagster.yaml, as a new workspace has."""
    home = parent / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


@contextlib.contextmanager
def dagster_dev(home: Path, data_dir: Path, **env_extra: str | None) -> Iterator[str]:
    """``dagster dev`` from the repository's workspace.yaml until the block ends; yields its URL.
    ``env_extra`` sets variables for it (None: unset)."""
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "IOZEN_DATA_DIR": str(data_dir)}
    for name, value in env_extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
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
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def code_location(url: str) -> dict[str, Any]:
    """The repository node of the UI's GraphQL answer, waiting for the code server to load."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            answer = httpx.post(f"{url}/graphql", json={"query": QUERY}, timeout=10)
            nodes = answer.json()["data"]["repositoriesOrError"].get("nodes")
            if nodes:
                (repo,) = nodes
                return dict(repo)
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            pass
        time.sleep(1)
    raise AssertionError("the UI never listed the code location")


@pytest.mark.slow
def test_dagster_dev_serves_the_definitions(tmp_path):
    home = new_dagster_home(tmp_path)
    # The UI must load without a key; only runs need one.
    with dagster_dev(home, tmp_path / "data", IOZEN_API_KEY=None) as url:
        repo = code_location(url)
        assets = {"/".join(node["assetKey"]["path"]): node for node in repo["assetNodes"]}
        assert set(assets) == {
            "intake_bots",
            "webhooks",
            "submissions",
            "submission_events",
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
            "webhook_events_sensor",
            "inbox_sensor",
        }
        jobs = {"sync_job", "load_job", "events_job", "replay_job"}
        assert jobs <= {j["name"] for j in repo["jobs"]}


CHROMIUM = Path("/usr/bin/chromium")
# Screenshots a person can look at after the run; the folder is git-ignored.
ARTIFACTS = ROOT / "test-artifacts" / "ui"


@pytest.mark.slow
def test_a_bot_is_found_by_name_on_the_partitions_page(world, tmp_path):
    """As a person would: Chromium opens the submissions partitions page of ``dagster dev``
    after a sync, types a bot's name in the partition filter and sees that bot, opens it, then
    finds it by name in the backfill dialog's partition picker."""
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM} (Debian's chromium package; .ci/run installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra)")
    home = new_dagster_home(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert run_sync(defs, instance, say=lambda line: None).success
    bot = world.sandbox.truth_bots()[2]
    key = bot_partition_key(bot["id"], bot["name"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with dagster_dev(home, world.paths.root) as url:
        code_location(url)
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{url}/assets/submissions?view=partitions")
                # A first visit offers a newsletter; a person would skip it.
                skip = page.get_by_role("button", name="Skip")
                with contextlib.suppress(playwright.TimeoutError):
                    skip.click(timeout=10_000)
                page.get_by_placeholder("Filter by name").fill(bot["name"].split()[0].lower())
                found = page.get_by_text(key[:12], exact=False).first
                found.wait_for(timeout=30_000)
                page.screenshot(path=str(ARTIFACTS / "partitions-filtered-by-name.png"))
                found.click()
                page.get_by_text(bot["name"], exact=True).first.wait_for(timeout=30_000)
                page.screenshot(path=str(ARTIFACTS / "partition-of-a-bot.png"))
                # The backfill dialog's partition picker finds the bot by its name too.
                page.goto(f"{url}/assets/submissions")
                page.get_by_role("button", name="Materialize…").first.click()
                page.get_by_text("Select a partition or create one").first.click()
                page.keyboard.type(bot["name"].split()[0].lower())
                page.get_by_text(key, exact=True).first.wait_for(timeout=30_000)
                page.screenshot(path=str(ARTIFACTS / "backfill-picker-by-name.png"))
            finally:
                browser.close()


# As Chromium runs on this kind of machine: no sandbox (root), no GPU, nothing fetched from
# the network in the background.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
