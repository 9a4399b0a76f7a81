"""Crashes: syncs, warehouse loads (their publication too) and replays killed with SIGKILL at
seeded random moments, again and again, then one run let finish.

After every kill the published warehouse must open read-only and answer a query, with no fewer
submissions than before (the worlds here only grow). At the end the warehouse equals the
sandbox's ground truth, and every CSV row exists exactly once in the sandbox. Most children are
forked from a fork server (``tests.support.children``), so dozens of kills fit in seconds; some
go through the real ``python -m iozen_etl`` commands. ``IOZEN_CRASH_SEED`` picks another seed;
the seed is printed, and named in every failure.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iozen_etl.replay.ledger import Ledger as ReplayLedger
from iozen_etl.sandbox import RunningServer, Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths
from tests.support.children import (
    REPO,
    Child,
    Command,
    iozen_etl,
    kill_leftovers,
    load_child,
    load_lock_holder,
    publish_seconds,
    replay_child,
    start,
    sync_child,
    wait_until_gone,
)
from tests.support.crashes import (
    CATEGORY,
    Kills,
    appears,
    count_rows,
    kill_when,
    nudge_world,
    open_published,
    record_rows,
    replayed_rows,
    requests_after,
    wait_for,
)
from tests.support.csv import HEADER, onboarding_rows, write_csv
from tests.support.reliability import Ledger, iterations
from tests.support.sandbox import sandbox_clock_client
from tests.support.sync import Workspace
from tests.support.truth import assert_lake_matches_truth, assert_warehouse_equals_truth
from tests.support.warehouse import fetch

SEED = int(os.environ.get("IOZEN_CRASH_SEED", "20260707"))
# A kill lands this long after its child starts, drawn uniformly from zero: about one run's
# length, so kills fall all along a run and some runs finish first.
SYNC_SPAN_S = 0.8
REPLAY_SPAN_S = 0.4
CHILD_TIMEOUT_S = 120.0
# Every so many replay kills go through the real command instead of the forked child.
REAL_REPLAY_EVERY = 10
ROWS_PER_FILE = 300


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    kill_leftovers()


@pytest.fixture
def rng() -> random.Random:
    print(f"crashes: seed {SEED} (set IOZEN_CRASH_SEED to change it)")
    return random.Random(SEED)


@pytest.fixture
def data(tmp_path: Path) -> DataPaths:
    return DataPaths(tmp_path / "data")


def served(config: SandboxConfig) -> Iterator[RunningServer]:
    server = serve(Sandbox(config))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sync_server() -> Iterator[RunningServer]:
    # Latency keeps each request in the air a little, so kills land mid-page as well as
    # between pages; more bots than the engine's threads, so bots commit in waves.
    yield from served(
        SandboxConfig(seed=SEED, rate_limit=10**9, bots=10, submissions_per_bot=100, latency_ms=2)
    )


@pytest.fixture
def replay_server() -> Iterator[RunningServer]:
    # Latency keeps POSTs in the air, so kills land with answers outstanding.
    yield from served(
        SandboxConfig(seed=SEED, rate_limit=10**9, bots=2, submissions_per_bot=1, latency_ms=10)
    )


def published_ids(data: DataPaths) -> list[str]:
    return [str(row[0]) for row in fetch(data, "select id from submissions")]


@pytest.mark.slow
def test_syncs_killed_at_random_moments_then_one_finishes(
    sync_server: RunningServer,
    data: DataPaths,
    tmp_path: Path,
    rng: random.Random,
    ledger: Ledger,
    long_run: bool,
) -> None:
    sandbox = sync_server.sandbox
    ledger.watch(sandbox.api_key, tmp_path)
    wanted = iterations(20, 150, long_run=long_run)
    kills = Kills("sync", SEED)
    args = (str(data.root), sync_server.base_url, sandbox.api_key)
    for attempt in range(3 * wanted):
        if kills.total >= wanted:
            break
        nudge_world(sandbox, rng)
        child = start(sync_child, tmp_path / f"sync-{attempt}.out", *args)
        time.sleep(rng.uniform(0, SYNC_SPAN_S))
        in_load = load_lock_holder(data) == child.pid
        if child.kill():
            kills.killed["load" if in_load else "sync"] += 1
        else:
            kills.finished += 1
            assert child.process.exitcode == 0, child.said()
        ledger.said([child.said()])
        kills.check_published(data)

    last = start(sync_child, tmp_path / "sync-last.out", *args)
    exit_code = last.wait(CHILD_TIMEOUT_S)
    ledger.said([last.said()])
    assert exit_code == 0, last.said()
    counted = count_rows(sandbox.submission_ids(), published_ids(data))
    record_rows(ledger, counted)
    assert counted.lost == counted.duplicated == 0, f"seed {SEED}: {counted}"
    assert_lake_matches_truth(data.root, sandbox)
    assert_warehouse_equals_truth(data, sandbox)
    kills.record(ledger)
    kills.assert_held(wanted)


@pytest.mark.slow
def test_loads_killed_at_random_moments_and_in_their_publication(
    data: DataPaths, tmp_path: Path, rng: random.Random, ledger: Ledger, long_run: bool
) -> None:
    # The lake is filled in-process between loads; only the load runs in the child.
    sandbox = Sandbox(SandboxConfig(seed=SEED, bots=6, submissions_per_bot=200))
    client = sandbox_clock_client(sandbox, seed=SEED)
    workspace = Workspace(data.root)
    ledger.watch(sandbox.api_key, tmp_path)
    workspace.sync(client)
    started = time.monotonic()
    first = start(load_child, tmp_path / "load-first.out", str(data.root))
    assert first.wait(CHILD_TIMEOUT_S) == 0, first.said()
    # The lengths of a load and of its publication, to draw kill moments from.
    load_span = time.monotonic() - started
    publish_span = publish_seconds(first.said())
    staging = data.published_db.with_name(data.published_db.name + ".next")

    wanted = iterations(20, 150, long_run=long_run)
    kills = Kills("load", SEED)
    for attempt in range(3 * wanted):
        if kills.total >= wanted:
            break
        nudge_world(sandbox, rng)
        workspace.sync(client)
        staged = appears(staging)
        child = start(load_child, tmp_path / f"load-{attempt}.out", str(data.root))
        if rng.random() < 0.5:
            # Inside the publication: from when this load's staged copy of the snapshot exists.
            wait_for(child, staged, CHILD_TIMEOUT_S)
            time.sleep(rng.uniform(0, publish_span / 2))
        else:
            time.sleep(rng.uniform(0, load_span))
        # Staged and not renamed into place yet: the kill lands inside the publication.
        where = "publish" if staged() else "load"
        if child.kill():
            kills.killed[where] += 1
        else:
            kills.finished += 1
            assert child.process.exitcode == 0, child.said()
        ledger.said([child.said()])
        kills.check_published(data)

    client.close()
    last = start(load_child, tmp_path / "load-last.out", str(data.root))
    exit_code = last.wait(CHILD_TIMEOUT_S)
    ledger.said([last.said()])
    assert exit_code == 0, last.said()
    counted = count_rows(sandbox.submission_ids(), published_ids(data))
    record_rows(ledger, counted)
    assert counted.lost == counted.duplicated == 0, f"seed {SEED}: {counted}"
    # The lake never read the webhooks: only the load is under test here.
    assert_warehouse_equals_truth(data, sandbox, webhooks=False)
    kills.record(ledger)
    kills.assert_held(wanted)


@pytest.mark.slow
def test_replays_killed_at_random_moments_create_each_row_once(
    replay_server: RunningServer,
    data: DataPaths,
    tmp_path: Path,
    rng: random.Random,
    ledger: Ledger,
    long_run: bool,
) -> None:
    sandbox = replay_server.sandbox
    ledger.watch(sandbox.api_key, tmp_path)
    bot = next(b["id"] for b in sandbox.truth_bots() if b["name"] == "Customer Onboarding")
    seeded = {str(s["id"]) for s in sandbox.truth_submissions(bot)}
    base_url, key = replay_server.base_url, sandbox.api_key
    env = {"IOZEN_API_KEY": key, "IOZEN_BASE_URL": base_url, "IOZEN_DATA_DIR": str(data.root)}
    files: list[Path] = []

    def new_file() -> Path:
        path = tmp_path / f"rows-{len(files)}.csv"
        files.append(write_csv(path, HEADER, onboarding_rows(ROWS_PER_FILE, len(files) * 1000)))
        return path

    def replay(path: Path, output: Path, real: bool) -> Child | Command:
        if real:
            args = [str(path), "--bot", bot, "--concurrency", "4"]
            return iozen_etl("replay", args, env, output)
        return start(replay_child, output, str(data.root), base_url, key, str(path), bot)

    wanted = iterations(20, 150, long_run=long_run)
    kills = Kills("replay", SEED)
    csv_path = new_file()
    for attempt in range(3 * wanted):
        if kills.total >= wanted:
            break
        real = kills.total % REAL_REPLAY_EVERY == REAL_REPLAY_EVERY - 1
        before = sandbox.request_count()
        child = replay(csv_path, tmp_path / f"replay-{attempt}.out", real)
        # Moments count from the child's first request: the command's start-up is long.
        wait_for(child, requests_after(sandbox, before), CHILD_TIMEOUT_S)
        time.sleep(rng.uniform(0, REPLAY_SPAN_S))
        if child.kill():
            kills.killed["replay command" if real else "replay"] += 1
        else:
            kills.finished += 1
            assert child.wait(0) == 0, child.said()
            csv_path = new_file()
        ledger.said([child.said()])

    for path in files:
        last = replay(path, tmp_path / f"{path.stem}-last.out", real=False)
        exit_code = last.wait(CHILD_TIMEOUT_S)
        ledger.said([last.said()])
        assert exit_code == 0, last.said()
    rows = [n + i * 1000 for i in range(len(files)) for n in range(ROWS_PER_FILE)]
    counted = count_rows(rows, replayed_rows(sandbox, bot, seeded))
    record_rows(ledger, counted)
    assert counted.lost == counted.duplicated == 0, f"seed {SEED}: {counted}"
    with ReplayLedger(data.state_db) as replay_ledger:
        outcomes = {entry.outcome for entry in replay_ledger.entries()}
    assert outcomes == {"created"}
    kills.record(ledger)
    kills.assert_held(wanted)


@pytest.mark.slow
def test_the_sync_command_killed_in_its_load_leaves_nothing_running(
    data: DataPaths, tmp_path: Path, ledger: Ledger
) -> None:
    sync_server = serve(Sandbox(SandboxConfig(seed=SEED, bots=4, submissions_per_bot=100)))
    sandbox = sync_server.sandbox
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", dagster_home)
    ledger.watch(sandbox.api_key, tmp_path)
    env = {
        "IOZEN_API_KEY": sandbox.api_key,
        "IOZEN_BASE_URL": sync_server.base_url,
        "IOZEN_DATA_DIR": str(data.root),
        "DAGSTER_HOME": str(dagster_home),
    }
    try:
        command = iozen_etl("sync", [], env, tmp_path / "sync-killed.out")
        # The load runs in a child of the command's: kill the command while that child loads.
        killed = kill_when(command, lambda: load_lock_holder(data) is not None, CHILD_TIMEOUT_S)
        ledger.said([command.said()])
        assert killed, f"the sync ended before its load could be killed: {command.said()}"
        left = wait_until_gone(command.pid, timeout=15)
        for pid in left:  # nothing may outlive the test, whatever it finds
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes of the killed sync still run: {left}"
        snapshot = open_published(data)
        assert snapshot.error is None, snapshot.error
        # Finished by the engines' child: the command's recovery is test_kill's subject.
        args = (str(data.root), sync_server.base_url, sandbox.api_key)
        last = start(sync_child, tmp_path / "sync-last.out", *args)
        exit_code = last.wait(CHILD_TIMEOUT_S)
        ledger.said([last.said()])
        assert exit_code == 0, last.said()
    finally:
        sync_server.close()
    assert_warehouse_equals_truth(data, sandbox)
    ledger.count(CATEGORY, "kill points survived", 1)
    ledger.count(CATEGORY, "sync command kills", 1)
