"""What the replay and pipeline fixtures yield: a sandbox and the data directory a run uses."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from iozen_etl.api import IozenClient
from iozen_etl.sandbox import RunningServer, Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths
from tests.support.clock import FakeTime
from tests.support.sandbox import fake_time_client
from tests.support.truth import SubmissionFacts, truth_submissions, warehouse_submissions


@dataclass
class ReplayWorld:
    """A seeded sandbox in-process, injected time, and the submissions seeded before a test."""

    sandbox: Sandbox
    time: FakeTime
    paths: DataPaths
    tmp: Path
    bot_id: str  # "Customer Onboarding": every field type, a content block, required fields
    seeded: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.seeded = {str(sub["id"]) for sub in self.sandbox.truth_submissions()}

    def client(self) -> IozenClient:
        return fake_time_client(self.sandbox, time=self.time)

    def posts(self) -> int:
        return self.sandbox.request_count("create_submission", "POST")

    def created(self, bot_id: str | None = None) -> list[dict[str, Any]]:
        """Submissions made since the sandbox was seeded."""
        subs = self.sandbox.truth_submissions(bot_id or self.bot_id)
        return [sub for sub in subs if sub["id"] not in self.seeded]


@dataclass
class ServedWorld:
    """A sandbox served on loopback, and the data directory a run (configured by env) uses."""

    sandbox: Sandbox
    server: RunningServer
    paths: DataPaths

    def warehouse_submissions(self) -> dict[str, SubmissionFacts]:
        """Every submission analysts see, as ``truth_submissions`` gives the API's."""
        return warehouse_submissions(self.paths)

    def truth_submissions(self) -> dict[str, SubmissionFacts]:
        return truth_submissions(self.sandbox)


def served_world(
    config: SandboxConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServedWorld]:
    """``config`` served on loopback, and the environment a pipeline run reads pointed at it."""
    sandbox = Sandbox(config)
    server = serve(sandbox)
    paths = DataPaths(tmp_path / "data")
    monkeypatch.setenv("IOZEN_API_KEY", sandbox.api_key)
    monkeypatch.setenv("IOZEN_BASE_URL", server.base_url)
    monkeypatch.setenv("IOZEN_DATA_DIR", str(paths.root))
    try:
        yield ServedWorld(sandbox, server, paths)
    finally:
        server.close()
