"""The production Dagster instance (``dagster_home/production/dagster.yaml``) on a PostgreSQL
server of the test's own.

The server is ``bench.postgres``'s (the benchmarks start theirs the same way); where the machine
cannot start one, the tests that need it skip, saying why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef
from dagster_shared.yaml_utils import safe_load_yaml

from bench.postgres import (
    EVENT_BATCHING,
    PostgresDatabase,
    PostgresServer,
    new_production_home,
    postgres_server,
    unavailable_reason,
)
from tests.support.contention import IN_PROCESS_LAUNCHER
from tests.support.receiver import free_port


def running_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free loopback port until the generator is closed; a skip where
    the machine has no server binaries (or, as root, no user to run them as)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with postgres_server(free_port()) as server:
        yield server


def production_home(
    folder: Path, database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A Dagster home holding a copy of the production instance file, and the environment that
    file and the command line read: DAGSTER_HOME, the DAGSTER_PG_* variables of ``database``,
    and event batching on (as the Makefile sets it)."""
    new_production_home(folder)
    monkeypatch.setenv("DAGSTER_HOME", str(folder))
    for name, value in database.env().items():
        monkeypatch.setenv(name, value)
    for name, value in EVENT_BATCHING.items():
        monkeypatch.setenv(name, value)
    return folder


def with_in_process_launcher(home: Path) -> dg.DagsterInstance:
    """The instance of ``home``'s file, except that the runs a backfill starts are launched in
    the launching thread (so a test drives Dagster's backfill daemon itself)."""
    overrides = safe_load_yaml(IN_PROCESS_LAUNCHER)
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), overrides=overrides))
