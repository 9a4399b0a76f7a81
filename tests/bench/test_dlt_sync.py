"""bench.dlt_sync against a tiny sandbox: each setup's DuckDB holds exactly the sandbox's truth,
after a first load and after a submission completed and two new ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.support import child_env
from iozen_etl.sandbox import Sandbox, SandboxConfig, serve

pytest.importorskip("dlt", reason="dlt comes with the bench extra: pip install -e '.[dev,bench]'")
pytestmark = pytest.mark.slow


def load(base_url: str, api_key: str, setup: str, work: Path) -> dict[str, Any]:
    """One ``python -m bench.dlt_sync`` run, as bench.compare starts it; its JSON line."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench.dlt_sync", "--base-url", base_url, "--setup", setup),
            *("--pipelines-dir", str(work / "pipelines"), "--duckdb", str(work / "dlt.duckdb")),
        ],
        env=child_env(IOZEN_API_KEY=api_key),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def complete_one_and_add_two(sandbox: Sandbox) -> None:
    waiting = next(sub for sub in sandbox.truth_submissions() if sub["status"] == "IN_PROGRESS")
    sandbox.update_submission(waiting["intake_bot_id"], waiting["id"], status="COMPLETED")
    sandbox.generate_submissions(waiting["intake_bot_id"], 2)


@pytest.mark.parametrize("setup", ["best", "incremental"])
def test_each_setup_holds_the_truth_after_a_load_and_after_changes(
    setup: str, tmp_path: Path
) -> None:
    # Served on loopback in this process, on wall time (the dlt child is another process).
    sandbox = Sandbox(SandboxConfig(seed=5, bots=3, submissions_per_bot=20, real_time=True))
    server = serve(sandbox)
    try:
        first = load(server.base_url, sandbox.api_key, setup, tmp_path)
        complete_one_and_add_two(sandbox)
        second = load(server.base_url, sandbox.api_key, setup, tmp_path)
    finally:
        server.close()
    assert first["exact"] and first["rows"] == first["truth_rows"] > 0, first
    assert second["exact"] and second["rows"] == first["rows"] + 2, second
    assert first["http_429"] == second["http_429"] == 0
