"""Fixture: a sandbox served on loopback, and the environment a pipeline run reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iozen_etl.sandbox import SandboxConfig
from tests.support.worlds import ServedWorld, served_world


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServedWorld]:
    config = SandboxConfig(seed=3, bots=6, submissions_per_bot=40, real_time=True)
    yield from served_world(config, tmp_path, monkeypatch)
