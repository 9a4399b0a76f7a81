"""Dagster's own cost on SQLite and on PostgreSQL: ``iozen-etl sync`` over a new workspace of
1,000 bots (the first sync, then a sync with nothing changed), once on a new SQLite instance
(``dagster_home/dagster.yaml``, what ``make ui`` uses) and once on a new PostgreSQL instance
(``dagster_home/production/dagster.yaml``, on a server started here as the tests start theirs).

Each sync is ``bench.changes``'s measurement: wall time less the start-up baseline, the
engine's and the load's own seconds is Dagster's time; events are read back from the instance.
Both instances get Dagster's switches the Makefile exports (``EVENT_BATCHING``), set here for
the child processes rather than taken from the caller's environment. Each instance is opened
once before the first sync, so its tables exist and the first sync's figures are those of a
deployed instance; the seconds that took are reported apart. The PostgreSQL server shares this
machine's cores with the sync, so each sync also reports its CPU seconds (the command's, its
load's child included) and, on PostgreSQL, the server's, which vary less than wall times on a
busy machine. On PostgreSQL each sync also reports the connections it opened (the server's
``pg_stat_database.sessions``): dagster-postgres opens one per storage call outside the
webserver, so a connection's cost (``connect_ms``, measured here too) is paid per event.

Run: ``python -m bench instance``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy

from bench import changes
from bench.postgres import (
    EVENT_BATCHING,
    PostgresDatabase,
    PostgresServer,
    new_production_home,
    postgres_server,
    unavailable_reason,
)
from bench.support import free_port

BOTS = changes.WIDE_BOTS
PER_BOT = changes.WIDE_PER_BOT
FIGURES = ("wall_s", "dagster_s", "cpu_s", "events")
STATS_SETTLE_S = 1.0


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in this process's environment until the block ends: the children it starts
    inherit them (``support.child_env``), and the instance figures are read from opens with
    them."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def create_instance(home: Path) -> float:
    """Seconds to open the new instance at ``home`` once (its tables are created)."""
    import dagster as dg

    started = time.perf_counter()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    return time.perf_counter() - started


class Sessions:
    """Connections opened to one database so far, as the server counts them (read over a
    connection to the maintenance database, so reading adds none)."""

    def __init__(self, server: PostgresServer, db_name: str) -> None:
        self.server = server
        self.db_name = db_name

    def count(self) -> int:
        # A session is counted when it ends; the server's statistics lag by a moment.
        time.sleep(STATS_SETTLE_S)
        engine = self.server.superuser.engine()
        try:
            with engine.connect() as con:
                sql = "select sessions from pg_stat_database where datname = :name"
                found = con.execute(sqlalchemy.text(sql), {"name": self.db_name}).scalar()
        finally:
            engine.dispose()
        return int(found or 0)


def connect_ms(database: PostgresDatabase, rounds: int = 30) -> float:
    """Median milliseconds to open a connection (password checked) and run ``select 1``."""
    engine = database.engine()
    times = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            with engine.connect() as con:
                con.execute(sqlalchemy.text("select 1"))
            times.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    return 1000 * statistics.median(times)


def measure(startup_s: float, server: PostgresServer | None) -> dict[str, Any]:
    """The first sync and an unchanged sync of a new 1,000-bot workspace on a new instance:
    PostgreSQL's (a new database on ``server``) when a server is given, else SQLite's."""
    options = ("--bots", str(BOTS), "--submissions-per-bot", str(PER_BOT))
    database = server.create_database("dagster") if server else None
    sessions = Sessions(server, database.db_name) if server and database else None
    values = {**EVENT_BATCHING, **(database.env() if database else {})}
    with environment(values), changes.workspace(*options) as work:
        figures: dict[str, Any] = {}
        if database is not None:
            work.home = new_production_home(work.data_dir.parent / "production_home")
            figures["connect_ms"] = round(connect_ms(database), 2)
        figures["create_s"] = round(create_instance(work.home), 2)
        for name in ("first_sync", "no_change"):
            before = sessions.count() if sessions else 0
            cpu_before = server.cpu_seconds() if server else 0.0
            figures[name] = work.sync(startup_s)
            if sessions and server:
                figures[name]["connections"] = sessions.count() - before
                figures[name]["server_cpu_s"] = round(server.cpu_seconds() - cpu_before, 2)
        first = figures["first_sync"]
        first["dagster_ms_per_bot"] = round(1000 * first["dagster_s"] / BOTS, 2)
        figures["exact_after"] = work.warehouse_equals_truth()
    return figures


def ratios(sqlite: dict[str, Any], postgres: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL / SQLite for each sync's wall time, Dagster time and events."""
    return {
        sync: {
            name: round(postgres[sync][name] / sqlite[sync][name], 2)
            if sqlite[sync][name]
            else None
            for name in FIGURES
        }
        for sync in ("first_sync", "no_change")
    }


def run() -> dict[str, Any]:
    reason = unavailable_reason()
    if reason is not None:
        print(f"skipped: {reason}", flush=True)
        return {"skipped": reason}
    startup_s = changes.startup_baseline()
    print(f"start-up (import iozen_etl.definitions): {startup_s:.2f} s", flush=True)
    results: dict[str, Any] = {"bots": BOTS, "per_bot": PER_BOT, "startup_s": round(startup_s, 2)}
    results["sqlite"] = sqlite = measure(startup_s, None)
    print(f"SQLite: {json.dumps(sqlite)}", flush=True)
    with postgres_server(free_port()) as server:
        results["postgres"] = postgres = measure(startup_s, server)
    print(f"PostgreSQL: {json.dumps(postgres)}", flush=True)
    results["postgres_over_sqlite"] = ratio = ratios(sqlite, postgres)
    for sync, label in (("first_sync", "first sync"), ("no_change", "nothing changed")):
        print(
            f"{BOTS:,} bots, {label}: "
            + ", ".join(
                f"{name} {sqlite[sync][name]} -> {postgres[sync][name]} (x{ratio[sync][name]})"
                for name in FIGURES
            ),
            flush=True,
        )
    first, unchanged = postgres["first_sync"], postgres["no_change"]
    print(
        f"PostgreSQL server CPU: first sync {first['server_cpu_s']} s, nothing changed "
        f"{unchanged['server_cpu_s']} s; connections opened: {first['connections']:,}, "
        f"{unchanged['connections']:,}; one connection (password checked, select 1): "
        f"{postgres['connect_ms']} ms",
        flush=True,
    )
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
