"""Secrets: after the whole suite, the API key appears nowhere.

This module runs last (``tests/reliability/conftest.py`` moves it there). Its own scenario
provokes every place a key could leak: Dagster sync runs (a DAGSTER_HOME in tmp) that succeed,
that fail with a wrong key (401) and with a key lacking a scope (403); the warehouse load; the
``iozen-etl sync`` and ``replay`` commands as subprocesses, one replay leaving a rejects file;
the reprs and errors of the client, the resource and the error tree; Python logging. Then one
check searches, for every key any reliability test used, every file under every place they
registered (raw bytes, and decoded: DuckDB, Parquet and SQLite values), Dagster's event log and
run storage read back through ``DagsterInstance``, and every text the tests saw.
"""

from __future__ import annotations

import base64
import logging
import os
import pickle
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import traceback
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iozen_etl.api import (
    AuthenticationRequired,
    InsufficientScopes,
    IozenClient,
    IozenError,
    RetryPolicy,
    TransportError,
)
from iozen_etl.definitions import defs
from iozen_etl.pipeline.launch import SyncOutcome, open_instance, run_sync
from iozen_etl.replay.rejects import rejects_path_for
from iozen_etl.resources import IozenApiResource
from iozen_etl.sandbox import Sandbox, SandboxConfig, sandbox_transport, serve
from iozen_etl.settings import API_KEY_ENV, BASE_URL_ENV, DATA_DIR_ENV, DataPaths
from tests.support.csv import HEADER, onboarding_rows, read_csv, write_csv
from tests.support.reliability import Ledger
from tests.support.sandbox import SANDBOX_URL
from tests.support.secrets import dagster_texts, logs_captured, scan
from tests.support.truth import SubmissionFacts, truth_submissions, warehouse_submissions

ROOT = Path(__file__).resolve().parents[2]
CATEGORY = "secrets"
BAD_ROWS = [
    ["No Email", "", "3", "2026-07-01", "high", "crm", "yes"],  # a required field left empty
    ["Bad Date", "bd@example.com", "4", "01/07/2026", "high", "crm", "yes"],
]


@dataclass
class SecretsWorld:
    """A sandbox on loopback, three keys, and every place the scenario writes."""

    sandbox: Sandbox
    base_url: str
    paths: DataPaths
    home: Path  # DAGSTER_HOME
    inbox: Path  # replayed CSV files and their rejects
    bot_id: str  # "Customer Onboarding"
    key: str  # every scope
    wrong_key: str  # unknown to the API: 401
    unscoped_key: str  # read:intake-bots only: 403 on submissions

    aside: Path  # a data directory and DAGSTER_HOME of their own, for a command run alongside

    def env(self, key: str, *, aside: bool = False) -> dict[str, str]:
        return {
            **os.environ,
            API_KEY_ENV: key,
            BASE_URL_ENV: self.base_url,
            DATA_DIR_ENV: str(self.aside / "data" if aside else self.paths.root),
            "DAGSTER_HOME": str(self.aside / "dagster_home" if aside else self.home),
        }


@dataclass
class DagsterRuns:
    right: SyncOutcome
    wrong: SyncOutcome
    unscoped: SyncOutcome
    stored: dict[str, SubmissionFacts]  # the warehouse after the right run
    truth: dict[str, SubmissionFacts]
    dagster_texts: int


@dataclass
class Commands:
    synced: subprocess.CompletedProcess[str]
    refused: subprocess.CompletedProcess[str]
    replayed: subprocess.CompletedProcess[str]
    replay_refused: subprocess.CompletedProcess[str]
    rejects: Path
    stored: dict[str, SubmissionFacts]  # the warehouse after the command's sync
    truth: dict[str, SubmissionFacts]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, ledger: Ledger) -> Iterator[SecretsWorld]:
    root = tmp_path_factory.mktemp("secrets")
    sandbox = Sandbox(SandboxConfig(seed=11, bots=3, submissions_per_bot=12, real_time=True))
    server = serve(sandbox)
    home, aside = root / "dagster_home", root / "aside"
    for folder in (home, aside / "dagster_home"):
        folder.mkdir(parents=True)
        shutil.copy(ROOT / "dagster_home" / "dagster.yaml", folder)
    bot_id = next(b["id"] for b in sandbox.truth_bots() if b["name"] == "Customer Onboarding")
    world = SecretsWorld(
        sandbox=sandbox,
        base_url=server.base_url,
        paths=DataPaths(root / "data"),
        home=home,
        inbox=root / "inbox",
        bot_id=bot_id,
        key=sandbox.api_key,
        wrong_key="iozen_live_" + secrets.token_hex(16),
        unscoped_key=sandbox.add_key(["read:intake-bots"]),
        aside=aside,
    )
    world.inbox.mkdir()
    for key in (world.key, world.wrong_key, world.unscoped_key):
        ledger.watch(key, world.paths.root, world.home, world.inbox, world.aside)
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in world.env(world.key).items():
                env.setenv(name, value)
            # open_instance() would set these for good; here they end with the module.
            env.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
            env.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
            yield world
    finally:
        server.close()


@pytest.fixture(scope="module")
def runs(world: SecretsWorld, ledger: Ledger) -> DagsterRuns:
    """The sync job in-process on the instance under DAGSTER_HOME: with the key, then with a
    wrong key, then with a key lacking read:submissions; Dagster's records read back."""
    said: list[str] = []
    with logs_captured() as logs, open_instance() as instance, pytest.MonkeyPatch.context() as env:
        right = run_sync(defs, instance, say=said.append)
        stored = warehouse_submissions(world.paths)
        env.setenv(API_KEY_ENV, world.wrong_key)
        wrong = run_sync(defs, instance, say=said.append)
        env.setenv(API_KEY_ENV, world.unscoped_key)
        unscoped = run_sync(defs, instance, full_refresh=True, say=said.append)
        recorded = dagster_texts(instance)
    outcomes = [right, wrong, unscoped]
    ledger.said([*said, *logs.texts, *recorded, *(repr(outcome) for outcome in outcomes)])
    return DagsterRuns(
        right, wrong, unscoped, stored, truth_submissions(world.sandbox), len(recorded)
    )


@pytest.fixture(scope="module")
def commands(world: SecretsWorld, runs: DagsterRuns, ledger: Ledger) -> Commands:
    """``iozen-etl sync`` after new submissions (its runs join the same instance) and with a
    wrong key; ``iozen-etl replay`` of a CSV with rejected rows, and with a wrong key."""
    world.sandbox.generate_submissions(world.bot_id, 4)
    # Two at a time, so their start-ups overlap: the refused sync in a place of its own.
    synced, refused = _commands(
        world, (world.key, False, ("sync",)), (world.wrong_key, True, ("sync",))
    )
    stored, truth = warehouse_submissions(world.paths), truth_submissions(world.sandbox)
    csv_path = write_csv(world.inbox / "onboarding.csv", HEADER, [*onboarding_rows(3), *BAD_ROWS])
    again = write_csv(world.inbox / "again.csv", HEADER, onboarding_rows(2, start=10))
    replayed, replay_refused = _commands(
        world,
        (world.key, False, ("replay", str(csv_path), "--bot", world.bot_id)),
        (world.wrong_key, True, ("replay", str(again), "--bot", world.bot_id)),
    )
    done = [synced, refused, replayed, replay_refused]
    ledger.said([text for result in done for text in (result.stdout, result.stderr)])
    return Commands(
        synced, refused, replayed, replay_refused, rejects_path_for(csv_path), stored, truth
    )


def _commands(
    world: SecretsWorld, *commands: tuple[str, bool, tuple[str, ...]]
) -> list[subprocess.CompletedProcess[str]]:
    """``iozen-etl`` run once per (key, aside, arguments), all at once; each one's output."""
    started = [
        (
            args,
            subprocess.Popen(
                [sys.executable, "-m", "iozen_etl", *args],
                cwd=ROOT,
                env=world.env(key, aside=aside),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for key, aside, args in commands
    ]
    done = []
    for args, process in started:
        stdout, stderr = process.communicate(timeout=240)
        done.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    return done


@pytest.mark.slow
def test_a_sync_with_the_key_loads_the_warehouse_as_the_api_has_it(runs: DagsterRuns) -> None:
    assert runs.right.success, runs.right.reason
    assert runs.stored == runs.truth
    assert runs.dagster_texts > 0


@pytest.mark.slow
def test_a_wrong_key_fails_the_run_naming_the_request(runs: DagsterRuns) -> None:
    assert not runs.wrong.success
    assert "authentication_required" in (runs.wrong.reason or "")
    assert "GET /intake-bots" in (runs.wrong.reason or "")


@pytest.mark.slow
def test_a_key_without_a_scope_fails_naming_the_scope(runs: DagsterRuns) -> None:
    assert not runs.unscoped.success
    reason = runs.unscoped.reason or ""
    assert "insufficient_scopes" in reason and "read:submissions" in reason


@pytest.mark.slow
def test_the_commands_say_why_in_one_line(world: SecretsWorld, commands: Commands) -> None:
    assert commands.synced.returncode == 0, commands.synced.stderr
    assert commands.stored == commands.truth
    assert commands.refused.returncode == 1
    assert "iozen-etl sync: failed:" in commands.refused.stderr
    assert "authentication_required" in commands.refused.stderr
    assert commands.replayed.returncode == 3, commands.replayed.stderr
    rejected = read_csv(commands.rejects)
    assert [row["full_name"] for row in rejected] == [row[0] for row in BAD_ROWS]
    assert commands.replay_refused.returncode == 1
    assert "authentication_required" in commands.replay_refused.stderr


@pytest.mark.slow
def test_reprs_and_errors_name_the_request_never_the_key(
    world: SecretsWorld, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def show(thing: object) -> None:
        seen.extend([str(thing), repr(thing)])

    def shown_error(error: BaseException) -> None:
        show(error)
        seen.append("".join(traceback.format_exception(error)))
        # Errors cross process boundaries (Dagster runs, the warehouse child) pickled.
        seen.append(pickle.dumps(error).decode("latin-1"))

    once = RetryPolicy(max_attempts=1)

    def client(key: str, base_url: str = SANDBOX_URL) -> IozenClient:
        transport = sandbox_transport(world.sandbox) if base_url == SANDBOX_URL else None
        return IozenClient(key, base_url, transport=transport, retry=once)

    with client(world.key) as good:
        show(good)
        next(good.iter_intake_bot_pages())
    resource = IozenApiResource(api_key=world.key)
    show(resource)
    with resource.client() as vended:
        show(vended)

    with client(world.wrong_key) as wrong, pytest.raises(AuthenticationRequired) as refused:
        next(wrong.iter_intake_bot_pages())
    shown_error(refused.value)
    with client(world.unscoped_key) as narrow, pytest.raises(InsufficientScopes) as scoped:
        next(narrow.iter_submission_pages(world.bot_id))
    shown_error(scoped.value)
    closed = f"http://127.0.0.1:{_closed_port()}/api/v1"
    with client(world.key, closed) as nowhere, pytest.raises(TransportError) as unreachable:
        next(nowhere.iter_intake_bot_pages())
    shown_error(unreachable.value)
    # Keys a header cannot carry are refused before any request, without quoting them.
    for unusable in ("iozen_live_" + "é" * 12, "iozen_live_abc\ndef0123456789"):
        ledger.watch(unusable)
        with pytest.raises(ValueError) as bad_key:
            IozenClient(unusable, SANDBOX_URL)
        shown_error(bad_key.value)

    seen.extend(record.getMessage() for record in caplog.records)
    seen.append(caplog.text)
    ledger.said(seen)
    assert all(isinstance(e, IozenError) for e in (refused.value, scoped.value, unreachable.value))
    assert "request id" in str(refused.value) and "GET /intake-bots" in str(refused.value)
    keys = [world.key, world.wrong_key, world.unscoped_key, "iozen_live_" + "é" * 12]
    assert scan(keys, [], seen).leaks == []


def _closed_port() -> int:
    """A loopback port nothing listens on: bound, then let go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_the_scan_finds_a_planted_key(tmp_path: Path) -> None:
    # The check itself is tested: a key hidden in each way the stores compress or encode it is
    # found, so "0 leaks" means none were there.
    canary = "iozen_live_" + secrets.token_hex(16)
    many = [canary] * 500  # dictionary-encoded and compressed: not in the raw bytes
    pq.write_table(pa.table({"note": many}), tmp_path / "a.parquet", compression="zstd")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create table t (id integer, note varchar)")
    con.execute("insert into t select range, ? from range(2000)", [canary])
    con.execute("create view v as select note from t")
    con.close()
    db = sqlite3.connect(tmp_path / "s.sqlite")
    db.execute("create table snapshots (body blob)")
    db.execute("insert into snapshots values (?)", [zlib.compress(canary.encode() * 3)])
    db.commit()
    db.close()
    basic = base64.b64encode(f"user:{canary}".encode()).decode()  # a misaligned base64 form
    found = scan([canary], [tmp_path], [f"Authorization: Basic {basic}", f"?k={canary}"]).leaks
    decoded = ("a.parquet (column note)", "w.duckdb (main.t.note", "main.v.note", "(snapshots)")
    for where in decoded:
        assert any(where in leak for leak in found), (where, found)
    assert any("base64" in leak and "text #1" in leak for leak in found), found
    assert any("as is" in leak and "text #2" in leak for leak in found), found


@pytest.mark.slow
def test_the_key_appears_nowhere(ledger: Ledger, runs: DagsterRuns, commands: Commands) -> None:
    # ``runs`` and ``commands``: the module's own scenario is checked even when it runs alone.
    result = scan(ledger.keys, ledger.places, ledger.texts)
    ledger.count(CATEGORY, "keys watched", result.keys)
    ledger.count(CATEGORY, "files scanned", result.files)
    ledger.count(CATEGORY, "DuckDB/Parquet/SQLite values scanned", result.values)
    ledger.count(CATEGORY, "texts scanned", result.texts)
    ledger.count(CATEGORY, "files or views left undecoded", len(result.undecodable))
    ledger.count(CATEGORY, "leaks", len(result.leaks))
    assert {"DuckDB", "Parquet", "SQLite"} <= result.decoded, result.decoded
    assert result.leaks == [], "\n".join(result.leaks)
