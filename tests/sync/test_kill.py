"""A sync killed with SIGKILL at several points resumes from its last committed pages."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from iozen_etl.sandbox import Sandbox, SandboxConfig, serve
from iozen_etl.sync.state import SUBMISSIONS_STREAM
from iozen_etl.warehouse.lake_files import list_lake
from tests.support.truth import assert_lake_matches_truth

REPO = Path(__file__).resolve().parents[2]


def committed_pages(state_db: Path) -> int:
    if not state_db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute(
                "SELECT coalesce(sum(pages_total), 0) FROM sync_state WHERE stream = ?",
                (SUBMISSIONS_STREAM,),
            ).fetchone()
    except sqlite3.OperationalError:  # the table is not created yet
        return 0
    return int(row[0])


def start_sync(
    base_url: str, api_key: str, data_dir: Path, dagster_home: Path
) -> subprocess.Popen[str]:
    """``iozen-etl sync``, the product's way in: the sync job under Dagster, then the load."""
    env = {
        **os.environ,
        "IOZEN_API_KEY": api_key,
        "IOZEN_BASE_URL": base_url,
        "IOZEN_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(dagster_home),
        "PYTHONPATH": str(REPO),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "iozen_etl", "sync"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume(tmp_path):
    # Latency keeps the sync running long enough to be killed in the middle of it; enough bots
    # that their commits come in waves (more bots than the engine's threads).
    box = Sandbox(SandboxConfig(rate_limit=10**9, bots=40, submissions_per_bot=300, latency_ms=20))
    server = serve(box)
    data_dir = tmp_path / "data"
    state_db = data_dir / "state.sqlite"
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", dagster_home)
    try:
        kills = 0
        # Each run is killed once it has committed this many pages more than the runs before it.
        for threshold in (1, 6, 12):
            process = start_sync(server.base_url, box.api_key, data_dir, dagster_home)
            target = committed_pages(state_db) + threshold
            deadline = time.monotonic() + 120
            while committed_pages(state_db) < target and process.poll() is None:
                assert time.monotonic() < deadline, "the sync made no progress"
                time.sleep(0.005)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.communicate(timeout=30)
        assert kills >= 3, "the sync finished before it could be killed"
        process = start_sync(server.base_url, box.api_key, data_dir, dagster_home)
        out, err = process.communicate(timeout=180)
        # Exit 0: every bot synced (a failed bot fails the run) and the warehouse loaded.
        assert process.returncode == 0, err
        assert out.startswith("sync summary:"), out
    finally:
        server.close()
    assert_lake_matches_truth(data_dir, box)
    # Every committed page was committed once: the runs resumed, they did not start over.
    with sqlite3.connect(state_db) as db:
        rows = db.execute(
            "SELECT sum(rows_total) FROM sync_state WHERE stream = ?", (SUBMISSIONS_STREAM,)
        ).fetchone()[0]
    assert rows == box.submission_total()
    # A kill mid-write leaves at most a hidden temporary file, never a torn Parquet file.
    for found in list_lake(data_dir / "parquet"):
        pq.read_metadata(data_dir / "parquet" / found.rel_path)
    assert "iozen_live_" not in out + err
