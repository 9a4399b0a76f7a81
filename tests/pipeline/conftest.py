"""Fixtures: a sandbox served on loopback, and the environment a pipeline run reads; a PostgreSQL
server for the production instance."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.postgres import PostgresDatabase, PostgresServer
from iozen_etl.sandbox import SandboxConfig
from tests.support.postgres import running_server
from tests.support.worlds import ServedWorld, served_world

DATABASE_NUMBERS = itertools.count(1)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServedWorld]:
    config = SandboxConfig(seed=3, bots=6, submissions_per_bot=40, real_time=True)
    yield from served_world(config, tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (skips where the machine cannot start one)."""
    yield from running_server()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> PostgresDatabase:
    """A new, empty database on the session's server: each test's instance starts empty."""
    return postgres_server.create_database(f"dagster_{next(DATABASE_NUMBERS)}")
