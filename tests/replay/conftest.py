"""A seeded sandbox in-process, a client bound to it on injected time, and CSV helpers."""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from iozen_etl.api import IozenClient
from iozen_etl.sandbox import Sandbox, SandboxConfig, sandbox_transport
from iozen_etl.settings import DataPaths

WALL_START = 1_790_000_000.0


class FakeTime:
    """Monotonic and wall clocks that move only when something sleeps (or a test says so)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 1000.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_START + self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept += seconds
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@dataclass
class World:
    sandbox: Sandbox
    time: FakeTime
    paths: DataPaths
    tmp: Path
    bot_id: str  # "Customer Onboarding": every field type, a content block, required fields
    seeded: set[str] = field(default_factory=set)

    def client(self) -> IozenClient:
        return IozenClient(
            self.sandbox.api_key,
            "https://sandbox.test/api/v1",
            transport=sandbox_transport(self.sandbox),
            clock=self.time.clock,
            wall_clock=self.time.wall,
            sleep=self.time.sleep,
        )

    def posts(self) -> int:
        return self.sandbox.request_count("create_submission", "POST")

    def created(self, bot_id: str | None = None) -> list[dict[str, object]]:
        """Submissions made since the sandbox was seeded."""
        subs = self.sandbox.truth_submissions(bot_id or self.bot_id)
        return [sub for sub in subs if sub["id"] not in self.seeded]

    def __post_init__(self) -> None:
        self.seeded = {str(sub["id"]) for sub in self.sandbox.truth_submissions()}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    sandbox = Sandbox(SandboxConfig(seed=7, bots=3, submissions_per_bot=2))
    bots = {bot["name"]: bot["id"] for bot in sandbox.truth_bots()}
    yield World(
        sandbox, FakeTime(), DataPaths(tmp_path / "data"), tmp_path, bots["Customer Onboarding"]
    )


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


HEADER = ("full_name", "email", "team_size", "start_date", "priority", "products", "consent")


def onboarding_rows(n: int, start: int = 0) -> list[list[str]]:
    return [
        [f"Person {i}", f"p{i}@example.com", str(i), "2026-07-01", "high", "crm|api", "yes"]
        for i in range(start, start + n)
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
