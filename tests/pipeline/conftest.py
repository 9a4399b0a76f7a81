"""Fixture: a sandbox served on loopback, and the environment a pipeline run reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iozen_etl.sandbox import Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths
from tests.support.worlds import ServedWorld


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServedWorld]:
    sandbox = Sandbox(SandboxConfig(seed=3, bots=6, submissions_per_bot=40, real_time=True))
    server = serve(sandbox)
    paths = DataPaths(tmp_path / "data")
    monkeypatch.setenv("IOZEN_API_KEY", sandbox.api_key)
    monkeypatch.setenv("IOZEN_BASE_URL", server.base_url)
    monkeypatch.setenv("IOZEN_DATA_DIR", str(paths.root))
    try:
        yield ServedWorld(sandbox, server, paths)
    finally:
        server.close()
