from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from iozen_etl.sandbox import RunningServer, Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths


@dataclass
class World:
    """A sandbox served on loopback, and the environment a run reads."""

    sandbox: Sandbox
    server: RunningServer
    paths: DataPaths

    def warehouse_submissions(self) -> dict[str, str]:
        """id -> updated_at (ISO, milliseconds) of every submission analysts see."""
        con = duckdb.connect(str(self.paths.published_db), read_only=True)
        try:
            rows = con.execute(
                "select id, strftime(updated_at at time zone 'UTC', '%Y-%m-%dT%H:%M:%S.%g')"
                " from submissions"
            ).fetchall()
        finally:
            con.close()
        return {row[0]: row[1] + "Z" for row in rows}

    def truth_submissions(self) -> dict[str, str]:
        return {s["id"]: s["updated_at"] for s in self.sandbox.truth_submissions()}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    sandbox = Sandbox(SandboxConfig(seed=3, bots=6, submissions_per_bot=40, real_time=True))
    server = serve(sandbox)
    paths = DataPaths(tmp_path / "data")
    monkeypatch.setenv("IOZEN_API_KEY", sandbox.api_key)
    monkeypatch.setenv("IOZEN_BASE_URL", server.base_url)
    monkeypatch.setenv("IOZEN_DATA_DIR", str(paths.root))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    try:
        yield World(sandbox, server, paths)
    finally:
        server.close()
