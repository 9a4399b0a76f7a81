"""Fixtures shared by several test directories (helpers live in ``tests.support``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iozen_etl.settings import DataPaths


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
