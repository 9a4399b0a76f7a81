"""Fixture: a seeded sandbox in-process and injected time, for the replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from iozen_etl.sandbox import Sandbox, SandboxConfig
from iozen_etl.settings import DataPaths
from tests.support.clock import FakeTime
from tests.support.worlds import ReplayWorld


@pytest.fixture
def world(tmp_path: Path) -> ReplayWorld:
    sandbox = Sandbox(SandboxConfig(seed=7, bots=3, submissions_per_bot=2))
    bots = {bot["name"]: bot["id"] for bot in sandbox.truth_bots()}
    return ReplayWorld(
        sandbox, FakeTime(), DataPaths(tmp_path / "data"), tmp_path, bots["Customer Onboarding"]
    )
