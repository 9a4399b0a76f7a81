"""Faults: syncs and replays under every fault the sandbox injects, alone and mixed, and under a
sandbox restarted mid-sync on its port. Each run ends exactly equal to the sandbox's truth, or,
when the faults outlast the retry budget, stops cleanly (errors naming the request id, committed
pages kept) and the next run completes it.

Waits run on the sandbox's clock (nobody sleeps) except on loopback, where the retry policy's
waits are made small.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from iozen_etl.api import IozenClient, RetryPolicy
from iozen_etl.api.errors import TransportError
from iozen_etl.definitions import defs
from iozen_etl.pipeline.launch import run_sync
from iozen_etl.replay import replay_csv
from iozen_etl.replay.ledger import Ledger as ReplayLedger
from iozen_etl.replay.report import ReplayReport
from iozen_etl.sandbox import FaultSpec, Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import load_warehouse
from tests.support.csv import HEADER, onboarding_rows, write_csv
from tests.support.faults import (
    FaultsFrom,
    Restartable,
    SyncRun,
    created_since,
    move_world,
    rows_wrong,
    sandbox_time_client,
    sync_once,
)
from tests.support.reliability import Ledger, iterations
from tests.support.sandbox import sandbox_clock_client
from tests.support.truth import (
    assert_warehouse_equals_truth,
    lake_submissions,
    truth_submissions,
)

CATEGORY = "faults"
# Each fault kind alone at a rate that strikes many times per run, then all of them together.
FAULTS = {
    "5xx": "5xx=0.25",
    "429 bursts": "429=0.1:3",
    "429 storm": "429=0.08:25",
    "dropped connections": "drop=0.2",
    "truncated bodies": "truncate=0.2",
    "HTML bodies": "html=0.2",
    "latency spikes": "latency=15ms@bot|submissions|create_submission",
    "mix": "5xx=0.08,429=0.04:3,drop=0.06,truncate=0.06,html=0.06,latency=2ms",
}
# Faults at 100% once they start: no retry budget outlasts them.
CEILING = {
    "5xx": "5xx=1",
    "429": "429=1:1",
    "dropped connections": "drop=1",
    "truncated bodies": "truncate=1",
    "HTML bodies": "html=1",
}
# Rides out any fault above: twelve tries, and waits on the sandbox clock cost nothing.
PATIENT = RetryPolicy(max_attempts=12, max_total_wait=3_600)
# Gives up after four tries, or after a minute of 429s.
IMPATIENT = RetryPolicy(max_attempts=4, max_total_wait=60)
# On loopback, in real time: short waits, so a restart longer than a second outlasts them.
QUICK = RetryPolicy(max_attempts=6, base_delay=0.02, max_delay=0.2, max_total_wait=5)


def _said(ledger: Ledger, run: SyncRun) -> None:
    ledger.said(run.errors)


def _check_exact(ledger: Ledger, paths: DataPaths, sandbox: Sandbox) -> None:
    """Load, count the rows the warehouse gets wrong (0 expected), then compare it all."""
    load_warehouse(paths)
    wrong = rows_wrong(paths, sandbox)
    ledger.count(CATEGORY, "rows wrong", wrong)
    assert wrong == 0
    assert_warehouse_equals_truth(paths, sandbox)


@pytest.mark.parametrize("kind", list(FAULTS))
def test_syncs_under_each_fault_equal_the_truth(
    kind: str, tmp_path: Path, ledger: Ledger, long_run: bool
) -> None:
    """A first sync and an incremental one after the world moved, under the fault: each time
    the warehouse equals the API."""
    faulted = 0
    for seed in range(iterations(2, 10, long_run=long_run)):
        sandbox = Sandbox(
            SandboxConfig(
                seed=seed, bots=5, submissions_per_bot=60, faults=FaultSpec.parse(FAULTS[kind])
            )
        )
        paths = DataPaths(tmp_path / f"seed-{seed}")
        ledger.watch(sandbox.api_key, paths.root)
        rng = random.Random(seed)
        for _ in range(2):
            client = sandbox_clock_client(sandbox, seed=seed, retry=PATIENT)
            run = sync_once(client, paths)
            _said(ledger, run)
            assert run.complete, run.errors
            _check_exact(ledger, paths, sandbox)
            ledger.count(CATEGORY, "fault scenarios exact", 1)
            move_world(sandbox, rng)
        faulted += sandbox.faults_injected()
    ledger.count(CATEGORY, "requests faulted", faulted)
    assert faulted > 0


def _replay(sandbox: Sandbox, client: IozenClient, paths: DataPaths, csv: Path) -> ReplayReport:
    bots = {bot["name"]: bot["id"] for bot in sandbox.truth_bots()}
    with client:
        return replay_csv(client, paths, csv, bot_id=bots["Customer Onboarding"], concurrency=4)


def _count_created(
    ledger: Ledger, sandbox: Sandbox, seeded: set[str], rows: list[list[str]]
) -> None:
    """Each CSV row is one new submission: none lost, none twice, nothing else created."""
    emails = [str(s["data"].get("email")) for s in created_since(sandbox, seeded)]
    wanted = [row[1] for row in rows]
    twice = sum(emails.count(email) - 1 for email in set(emails))
    lost = sum(1 for email in wanted if email not in emails)
    ledger.count(CATEGORY, "replayed rows created twice", twice)
    ledger.count(CATEGORY, "replayed rows lost", lost)
    assert (twice, lost) == (0, 0)
    assert sorted(emails) == sorted(wanted)
    ledger.count(CATEGORY, "replayed rows created exactly once", len(wanted))


@pytest.mark.parametrize("kind", list(FAULTS))
def test_replays_under_each_fault_create_every_row_once(
    kind: str, tmp_path: Path, ledger: Ledger, long_run: bool
) -> None:
    for seed in range(iterations(2, 10, long_run=long_run)):
        sandbox = Sandbox(
            SandboxConfig(
                seed=seed, bots=3, submissions_per_bot=2, faults=FaultSpec.parse(FAULTS[kind])
            )
        )
        seeded = set(sandbox.submission_ids())
        paths = DataPaths(tmp_path / f"seed-{seed}")
        ledger.watch(sandbox.api_key, paths.root, tmp_path)
        rows = onboarding_rows(40, start=seed * 1000)
        csv = write_csv(tmp_path / f"seed-{seed}.csv", HEADER, rows)
        report = _replay(
            sandbox, sandbox_clock_client(sandbox, seed=seed, retry=PATIENT), paths, csv
        )
        ledger.said([report.stopped_reason or "", *(p.reason for p in report.problems)])
        assert report.complete, (report.stopped_reason, report.problems)
        assert report.created == len(rows)
        _count_created(ledger, sandbox, seeded, rows)
        ledger.count(CATEGORY, "fault scenarios exact", 1)
        ledger.count(CATEGORY, "requests faulted", sandbox.faults_injected())


def _assert_names_the_request(kind: str, errors: list[str]) -> None:
    """Every error says which request failed: its request id, or for a connection dropped
    before any answer (no request id exists), that no response came and for which path."""
    assert errors
    for error in errors:
        if kind == "dropped connections":
            assert "no response" in error and " /" in error, error
        else:
            assert "request id req_" in error, error


def _assert_committed_pages_kept(root: Path, sandbox: Sandbox) -> int:
    """What the stopped run committed is in the lake as the API has it; returns how many."""
    kept = lake_submissions(root) if (root / "parquet").exists() else {}
    truth = truth_submissions(sandbox)
    assert all(truth[sid] == facts for sid, facts in kept.items())
    return len(kept)


@pytest.mark.parametrize("kind", list(CEILING))
def test_faults_past_the_retry_budget_stop_cleanly_and_the_next_sync_completes(
    kind: str, tmp_path: Path, ledger: Ledger, long_run: bool
) -> None:
    """The faults start after a seeded number of requests and never let up: the run stops with
    errors naming the request, keeping its committed pages; without the faults, the next run
    reads only what is left and the warehouse equals the API."""
    for seed in range(iterations(2, 12, long_run=long_run)):
        sandbox = Sandbox(SandboxConfig(seed=seed, bots=6, submissions_per_bot=150))
        paths = DataPaths(tmp_path / f"seed-{seed}")
        ledger.watch(sandbox.api_key, paths.root)
        # A sync here makes at least 14 requests (listing, 6 details, webhooks, 6+ pages).
        after = random.Random(seed).randint(1, 12)
        faulty = FaultsFrom(sandbox, after, FaultSpec.parse(CEILING[kind]))
        stopped = sync_once(sandbox_time_client(sandbox, faulty, IMPATIENT, seed), paths)
        _said(ledger, stopped)
        assert not stopped.complete
        _assert_names_the_request(kind, stopped.errors)
        kept = _assert_committed_pages_kept(paths.root, sandbox)
        ledger.count(CATEGORY, "requests faulted", sandbox.faults_injected())

        sandbox.config.faults = None
        resumed = sync_once(sandbox_clock_client(sandbox, seed=seed, retry=IMPATIENT), paths)
        _said(ledger, resumed)
        assert resumed.complete, resumed.errors
        assert resumed.subs is not None
        # Committed pages are not read again: the new rows are exactly the ones not kept.
        assert resumed.subs.total("rows_new") == sandbox.submission_total() - kept
        _check_exact(ledger, paths, sandbox)
        ledger.count(CATEGORY, "partial stops completed by the next run", 1)


@pytest.mark.parametrize("kind", list(CEILING))
def test_replay_faults_past_the_retry_budget_leave_rows_pending_for_the_next_run(
    kind: str, tmp_path: Path, ledger: Ledger, long_run: bool
) -> None:
    """POSTs fail for good after a seeded number: the rows sent before are created, the others
    are left pending (the reasons name the request id), and the next run creates each once."""
    for seed in range(iterations(2, 12, long_run=long_run)):
        sandbox = Sandbox(SandboxConfig(seed=seed, bots=3, submissions_per_bot=2))
        seeded = set(sandbox.submission_ids())
        paths = DataPaths(tmp_path / f"seed-{seed}")
        ledger.watch(sandbox.api_key, paths.root, tmp_path)
        rows = onboarding_rows(30, start=seed * 1000)
        csv = write_csv(tmp_path / f"seed-{seed}.csv", HEADER, rows)
        # The first request reads the bot's schema; POSTs follow.
        after = random.Random(seed).randint(2, 20)
        spec = FaultSpec.parse(CEILING[kind] + "@create_submission")
        faulty = FaultsFrom(sandbox, after, spec)
        client = sandbox_time_client(sandbox, faulty, IMPATIENT, seed)
        stopped = _replay(sandbox, client, paths, csv)
        with ReplayLedger(paths.state_db) as book:
            reasons = [e.reason or "" for e in book.entries() if e.outcome == "pending"]
        ledger.said([stopped.stopped_reason or "", *reasons])
        assert not stopped.complete and stopped.pending > 0
        assert stopped.created + stopped.pending == len(rows)
        # The rows that met the fault say why; the others were never sent, for the same reason.
        met = [r for r in reasons if not r.startswith("not sent: ")]
        _assert_names_the_request(kind, met)
        ledger.count(CATEGORY, "requests faulted", sandbox.faults_injected())

        sandbox.config.faults = None
        resumed = _replay(sandbox, sandbox_clock_client(sandbox, seed=seed), paths, csv)
        ledger.said([resumed.stopped_reason or ""])
        assert resumed.complete, (resumed.stopped_reason, resumed.problems)
        assert resumed.already_created == stopped.created
        _count_created(ledger, sandbox, seeded, rows)
        ledger.count(CATEGORY, "partial stops completed by the next run", 1)


def test_a_wait_ceiling_while_reading_bot_details_names_the_request(
    tmp_path: Path, ledger: Ledger
) -> None:
    """Regression: a ceiling reached while fetching bot details stopped the run with no error
    at all (the intake_bots step said only "while listing bots"); it now names the request."""
    sandbox = Sandbox(SandboxConfig(seed=3, bots=4, submissions_per_bot=10))
    paths = DataPaths(tmp_path / "data")
    ledger.watch(sandbox.api_key, paths.root)
    # The listing answers; every bot detail after it meets 429s until the ceiling.
    faulty = FaultsFrom(sandbox, 1, FaultSpec.parse("429=1:1"))
    stopped = sync_once(sandbox_time_client(sandbox, faulty, IMPATIENT, 3), paths)
    _said(ledger, stopped)
    assert stopped.bots is not None and stopped.bots.stopped_by_wait_ceiling
    error = stopped.bots.wait_ceiling_error or ""
    assert "retry ceiling" in error and "GET /intake-bots/" in error
    assert "request id req_" in error


@pytest.mark.slow
def test_a_closed_sandbox_answers_no_kept_alive_connection(ledger: Ledger) -> None:
    """Regression: a closed server went on answering clients on their kept-alive connections,
    so a "restart" was none. Closed, it answers nothing; served again on its port, it answers."""
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=1))
    ledger.watch(sandbox.api_key)
    served = Restartable(sandbox)
    with IozenClient(sandbox.api_key, served.base_url, retry=RetryPolicy(max_attempts=1)) as client:
        assert len(client.list_intake_bots_page().items) == 1
        served.down()
        with pytest.raises(TransportError) as refused:
            client.list_intake_bots_page()
        ledger.said([str(refused.value)])
        served.up()
        assert len(client.list_intake_bots_page().items) == 1
    served.close()


def _sync_in_thread(
    client: IozenClient, paths: DataPaths
) -> tuple[threading.Thread, list[SyncRun]]:
    done: list[SyncRun] = []
    thread = threading.Thread(target=lambda: done.append(sync_once(client, paths)))
    thread.start()
    return thread, done


@pytest.mark.slow
def test_a_sandbox_restarted_mid_sync_on_its_port_loses_nothing(
    tmp_path: Path, ledger: Ledger, long_run: bool
) -> None:
    """The served sandbox goes down after a seeded number of requests, for a seeded time, and
    comes back on the same port with the same world. The sync rides it out through its retries,
    or stops cleanly and the next run completes; either way the warehouse equals the API."""
    sandbox = Sandbox(
        SandboxConfig(seed=11, bots=6, submissions_per_bot=200, real_time=True, latency_ms=3)
    )
    paths = DataPaths(tmp_path / "data")
    ledger.watch(sandbox.api_key, paths.root)
    served = Restartable(sandbox)
    rng = random.Random(11)
    try:
        for _ in range(iterations(4, 20, long_run=long_run)):
            start = sandbox.request_count()
            at = start + rng.randint(1, 8)
            client = IozenClient(sandbox.api_key, served.base_url, retry=QUICK)
            thread, done = _sync_in_thread(client, paths)
            while sandbox.request_count() < at and thread.is_alive():
                time.sleep(0.001)
            restarted = thread.is_alive()
            served.restart(rng.uniform(0.05, 1.5))
            thread.join()
            client.close()
            (run,) = done
            _said(ledger, run)
            if not restarted:
                ledger.count(CATEGORY, "restarts that missed the sync", 1)
            elif run.complete:
                ledger.count(CATEGORY, "restarts ridden out", 1)
            else:
                with IozenClient(sandbox.api_key, served.base_url, retry=QUICK) as again:
                    resumed = sync_once(again, paths)
                _said(ledger, resumed)
                assert resumed.complete, resumed.errors
                ledger.count(CATEGORY, "partial stops completed by the next run", 1)
            _check_exact(ledger, paths, sandbox)
            ledger.count(CATEGORY, "fault scenarios exact", 1)
            move_world(sandbox, rng)
    finally:
        served.close()


@pytest.mark.slow
def test_the_sync_job_under_a_mix_of_faults_equals_the_truth(
    tmp_path: Path,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Dagster sync job (in-process, as ``iozen-etl sync`` runs it) against a served sandbox
    under every fault kind but 429s (their waits are a second or more of real time)."""
    spec = "5xx=0.06,drop=0.04,truncate=0.04,html=0.04,latency=2ms"
    sandbox = Sandbox(
        SandboxConfig(
            seed=5, bots=5, submissions_per_bot=120, real_time=True, faults=FaultSpec.parse(spec)
        )
    )
    paths = DataPaths(tmp_path / "data")
    ledger.watch(sandbox.api_key, paths.root)
    caplog.set_level(logging.INFO)
    with serve(sandbox) as server:
        monkeypatch.setenv("IOZEN_API_KEY", sandbox.api_key)
        monkeypatch.setenv("IOZEN_BASE_URL", server.base_url)
        monkeypatch.setenv("IOZEN_DATA_DIR", str(paths.root))
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
        lines: list[str] = []
        with dg.DagsterInstance.ephemeral() as instance:
            outcome = run_sync(defs, instance, say=lines.append)
        ledger.said([*lines, outcome.reason or "", caplog.text])
        assert outcome.success, outcome.reason
    wrong = rows_wrong(paths, sandbox)
    ledger.count(CATEGORY, "rows wrong", wrong)
    assert wrong == 0
    assert_warehouse_equals_truth(paths, sandbox)
    ledger.count(CATEGORY, "fault scenarios exact", 1)
    assert sandbox.faults_injected() > 0
    ledger.count(CATEGORY, "requests faulted", sandbox.faults_injected())
