"""Contention: writers and readers of one data directory at the same time.

A sync started from the command line (as cron or a person starts it), a UI backfill of some bot
partitions, loads of the warehouse as its sensor starts them, and analysts querying the
published warehouse in a loop, all at once; then two ``iozen-etl sync`` started together. What
must hold: no failure from a lock, no reader ever sees half a load (every snapshot whole, no
bot's count going down, no load older than one seen before), and the data exact after.
"""

from __future__ import annotations

import random
from pathlib import Path

import dagster as dg
import pytest

from iozen_etl.definitions import defs
from iozen_etl.pipeline.launch import run_sync
from iozen_etl.pipeline.partitions import BOT_PARTITIONS_NAME
from iozen_etl.sandbox import RunningServer, Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import load_warehouse
from tests.support.backfill import run_ui_backfill
from tests.support.contention import (
    Loop,
    ReaderTally,
    dagster_home,
    read_in_process,
    read_with_command,
    start_sync,
)
from tests.support.reliability import Ledger, iterations
from tests.support.truth import (
    assert_warehouse_equals_truth,
    truth_submissions,
    warehouse_submissions,
)

CATEGORY = "contention"


def rows_wrong(paths: DataPaths, sandbox: Sandbox) -> int:
    """Submissions missing from the warehouse, extra in it, or different from the API's."""
    stored = warehouse_submissions(paths)
    truth = truth_submissions(sandbox)
    missing = set(truth) - set(stored)
    extra = set(stored) - set(truth)
    differ = {sid for sid in set(truth) & set(stored) if stored[sid] != truth[sid]}
    return len(missing) + len(extra) + len(differ)


def lock_failures(texts: list[str]) -> int:
    """Error texts that name a lock (SQLite's, DuckDB's, the warehouse's)."""
    return sum(1 for text in texts if "lock" in text.lower())


def change_the_world(sandbox: Sandbox, rng: random.Random) -> None:
    """What people do in ioZen meanwhile: new submissions, IN_PROGRESS ones completed."""
    bots = sandbox.bot_ids()
    bot_id = rng.choice(bots)
    if rng.random() < 0.7:
        sandbox.generate_submissions(bot_id, rng.randint(1, 3))
        return
    open_ones = [s["id"] for s in sandbox.truth_submissions(bot_id) if s["status"] == "IN_PROGRESS"]
    if open_ones:
        sandbox.update_submission(bot_id, rng.choice(open_ones), status="COMPLETED")


# Dagster's GraphQL test helper leaves an event loop's shutdown coroutine un-awaited.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.slow
def test_sync_backfill_loads_and_analysts_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger: Ledger, long_run: bool
) -> None:
    # Latency keeps each sync running long enough for the others to overlap it.
    sandbox = Sandbox(
        SandboxConfig(seed=7, bots=6, submissions_per_bot=60, real_time=True, latency_ms=10)
    )
    server = serve(sandbox)
    paths = DataPaths(tmp_path / "data")
    home = dagster_home(tmp_path / "dagster_home", in_process_launcher=True)
    monkeypatch.setenv("IOZEN_API_KEY", sandbox.api_key)
    monkeypatch.setenv("IOZEN_BASE_URL", server.base_url)
    monkeypatch.setenv("IOZEN_DATA_DIR", str(paths.root))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ledger.watch(sandbox.api_key, paths.root, home)
    rng = random.Random(7)
    said: list[str] = []
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            first = run_sync(defs, instance, say=said.append)
            assert first.success, first.reason
            for _ in range(iterations(1, 5, long_run=long_run)):
                _one_round(sandbox, server, paths, home, instance, rng, ledger, said)
    finally:
        server.close()
        ledger.said(said)


def _one_round(
    sandbox: Sandbox,
    server: RunningServer,
    paths: DataPaths,
    home: Path,
    instance: dg.DagsterInstance,
    rng: random.Random,
    ledger: Ledger,
    said: list[str],
) -> None:
    """One stretch of everything at once, then a catch-up sync and the data checked."""
    # A bot created meanwhile: the command's listing registers its partition during the backfill.
    sandbox.add_bot(f"Added {len(sandbox.bot_ids())}")
    keys = instance.get_dynamic_partitions(BOT_PARTITIONS_NAME)
    # Two stretches of bots: the backfill makes one run of each (BackfillPolicy.single_run).
    chosen = [keys[1], keys[2], keys[4]]

    in_process, by_command = ReaderTally(), ReaderTally()
    loops = [
        Loop(lambda: change_the_world(sandbox, rng), pause_s=0.2),
        Loop(lambda: read_in_process(paths, in_process), pause_s=0.05),
        Loop(lambda: read_with_command(paths.root, by_command), pause_s=0.2),
        Loop(lambda: _load(paths), pause_s=0.3),  # as the warehouse sensor starts loads
    ]
    mutator, *readers, loader = loops
    for loop in loops:
        loop.start()
    command = start_sync(server.base_url, sandbox.api_key, paths.root, home)
    try:
        backfill = run_ui_backfill(instance, chosen)
        out, err = command.communicate(timeout=300)
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate()
        for loop in loops:
            loop.stop()
    said.extend([out, err, *loader.errors, *in_process.texts, *by_command.texts])

    # Everything people did meanwhile is read by the next scheduled sync, which loads it.
    catch_up = run_sync(defs, instance, say=said.append)
    wrong = rows_wrong(paths, sandbox)

    tallies = (in_process, by_command)
    errors = [*loader.errors, *mutator.errors, *(e for r in readers for e in r.errors)]
    failures = [*errors, *(e for t in tallies for e in t.lock_errors + t.other_errors)]
    if command.returncode != 0:
        failures.append(err)
    ledger.count(CATEGORY, "concurrent runs", 1 + backfill.runs)
    ledger.count(CATEGORY, "reader queries", sum(t.queries for t in tallies))
    ledger.count(CATEGORY, "loads meanwhile", loader.calls - len(loader.errors))
    ledger.count(CATEGORY, "inconsistent snapshots seen", sum(len(t.inconsistent) for t in tallies))
    ledger.count(CATEGORY, "lock failures", lock_failures(failures))
    ledger.count(CATEGORY, "rows wrong after", wrong)

    assert command.returncode == 0, err
    assert "Traceback" not in out + err, err
    assert backfill.status == "COMPLETED_SUCCESS", backfill
    assert backfill.runs == 2 and backfill.runs_succeeded == 2, backfill
    assert not failures, failures
    for tally in tallies:
        assert tally.queries > 0
        assert not tally.inconsistent, tally.inconsistent
    assert catch_up.success, catch_up.reason
    assert wrong == 0
    assert_warehouse_equals_truth(paths, sandbox)


def _load(paths: DataPaths) -> None:
    load_warehouse(paths)


@pytest.mark.slow
def test_two_syncs_started_at_once(tmp_path: Path, ledger: Ledger, long_run: bool) -> None:
    sandbox = Sandbox(
        SandboxConfig(seed=11, bots=5, submissions_per_bot=50, real_time=True, latency_ms=5)
    )
    server = serve(sandbox)
    data_dir = tmp_path / "data"
    home = dagster_home(tmp_path / "dagster_home")
    ledger.watch(sandbox.api_key, data_dir, home)
    rng = random.Random(11)
    try:
        for round_number in range(iterations(2, 6, long_run=long_run)):
            if round_number:
                # New work for both: a new bot (both listings race to register its partition)
                # and new submissions in some of the others.
                sandbox.add_bot(f"Round {round_number}")
                for _ in range(5):
                    change_the_world(sandbox, rng)
            first = start_sync(server.base_url, sandbox.api_key, data_dir, home)
            second = start_sync(server.base_url, sandbox.api_key, data_dir, home)
            outputs = [process.communicate(timeout=300) for process in (first, second)]
            texts = [text for pair in outputs for text in pair]
            ledger.said(texts)
            codes = [first.returncode, second.returncode]
            failed = [err for (_, err), code in zip(outputs, codes, strict=True) if code != 0]
            wrong = rows_wrong(DataPaths(data_dir), sandbox)
            waited = sum(1 for _, err in outputs if "waiting for another sync" in err)
            ledger.count(CATEGORY, "concurrent runs", 2)
            ledger.count(CATEGORY, "syncs that waited for the other", waited)
            ledger.count(CATEGORY, "lock failures", lock_failures(failed))
            ledger.count(CATEGORY, "rows wrong after", wrong)
            assert codes == [0, 0], failed
            assert not any("Traceback" in text for text in texts), texts
            assert wrong == 0
            assert_warehouse_equals_truth(DataPaths(data_dir), sandbox)
    finally:
        server.close()
