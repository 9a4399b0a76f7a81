"""Fixtures shared by several test directories (helpers live in ``tests.support``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iozen_etl.settings import DataPaths


def pytest_configure(config: pytest.Config) -> None:
    # The Makefile exports DAGSTER_HOME (the project's dagster_home/, for `make ui`). No test,
    # nor any command a test starts, may write its runs there: each names a home of its own in
    # a temporary folder, or runs on an ephemeral instance. The storage suite also limits the
    # size of every file its commands write, the Dagster home's among them.
    os.environ.pop("DAGSTER_HOME", None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        help="reliability suite: many more kill points, faults and inputs (minutes, not seconds)",
    )


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    """An empty data directory."""
    return DataPaths(tmp_path / "data")
