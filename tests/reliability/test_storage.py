"""Storage faults: the data directory's files stop growing in the middle of a run.

Each command runs in a child process whose files may not grow past a limit (``RLIMIT_FSIZE``,
with SIGXFSZ ignored so the write fails with EFBIG instead of killing it). The limits are drawn
from a seeded generator, within ranges that land the failure in each writer in turn: the
Parquet lake, the SQLite state file, the DuckDB writer file, the published snapshot, and a
replay's ledger and rejects file. Every time: the command exits non-zero with a last line that
names the file's path, no torn file is visible to a reader, the published warehouse still opens
with what it held before; then the same command without a limit completes and matches the
sandbox's ground truth exactly.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from iozen_etl.sandbox import RunningServer, Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths
from tests.support.csv import HEADER, onboarding_rows, read_csv, write_csv
from tests.support.reliability import Ledger, iterations
from tests.support.storage import (
    Outcome,
    largest_file,
    read_only_folder,
    run_command,
    torn_files,
    writer_named,
)
from tests.support.truth import (
    assert_lake_matches_truth,
    assert_warehouse_equals_truth,
    warehouse_submissions,
)

CATEGORY = "storage"
SEED = 20260307
KIB = 1024
# SQLite's shared-memory index beside a WAL file is 32 KiB: below that, the state file cannot
# be opened for writing at all.
SQLITE_SHM = 32 * KIB


@pytest.fixture
def served() -> Iterator[RunningServer]:
    server = serve(Sandbox(SandboxConfig(seed=SEED % 1000, bots=3, submissions_per_bot=300)))
    yield server
    server.close()


def environment(server: RunningServer, data_dir: Path) -> dict[str, str]:
    return {
        "IOZEN_API_KEY": server.sandbox.api_key,
        "IOZEN_BASE_URL": server.base_url,
        "IOZEN_DATA_DIR": str(data_dir),
    }


def check_failed_cleanly(
    outcome: Outcome, data_dir: Path, ledger: Ledger, *, limit: int, expected: str
) -> str:
    """The run failed, its last line names the file that could not grow, nothing is torn;
    returns the writer whose file it named."""
    ledger.said([outcome.out, outcome.err])
    ledger.count(CATEGORY, "storage faults injected")
    context = f"limit {limit:,} bytes: exit {outcome.code}\n{outcome.err[-3000:]}"
    assert outcome.code != 0, context
    assert "Traceback" not in outcome.last_line, context
    writer = writer_named(outcome.last_line, data_dir)
    assert writer is not None, f"the last line names no path under {data_dir}: {context}"
    ledger.count(CATEGORY, "errors naming the path")
    torn = torn_files(data_dir)
    ledger.count(CATEGORY, "half-written files seen", len(torn))
    assert not torn, f"{context}\ntorn: {torn}"
    assert writer == expected, f"the fault was meant for the {expected}: {context}"
    return writer


@pytest.mark.slow
def test_sync_and_load_fail_cleanly_when_files_cannot_grow_and_the_next_run_is_exact(
    tmp_path: Path, ledger: Ledger, long_run: bool
) -> None:
    rng = random.Random(SEED)
    # Each round on a world of its own: the limits that land a fault in each writer are drawn
    # from size bands (the state file below the lake's files) that a world grown over several
    # rounds no longer has.
    for round_number in range(iterations(1, 4, long_run=long_run)):
        config = SandboxConfig(seed=(SEED + round_number) % 1000, bots=3, submissions_per_bot=300)
        server = serve(Sandbox(config))
        try:
            sync_faults_round(server, tmp_path / f"round-{round_number}", rng, ledger)
        finally:
            server.close()


def sync_faults_round(
    served: RunningServer, folder: Path, rng: random.Random, ledger: Ledger
) -> None:
    """A fault in each writer of a sync in turn, one in a rebuild, then a sync that completes;
    then a load that fails alone, and the sync after it that publishes what it left out."""
    box = served.sandbox
    data_dir = folder / "data"
    paths = DataPaths(data_dir)
    env = environment(served, data_dir)
    ledger.watch(box.api_key, data_dir)
    first = run_command(["sync"], env)
    ledger.said([first.out, first.err])
    assert first.code == 0, first.err
    for writer, limit in sync_faults(rng, data_dir):
        published = warehouse_submissions(paths)
        # New submissions in every bot: the run has pages, files and a load to write.
        for bot_id in box.bot_ids():
            box.generate_submissions(bot_id, rng.randint(20, 120))
        if writer == "publish":
            # The snapshot is the one file a load writes in the data directory itself.
            with read_only_folder(data_dir):
                outcome = run_command(["sync"], env)
        else:
            outcome = run_command(["sync"], env, limit=limit)
        check_failed_cleanly(outcome, data_dir, ledger, limit=limit, expected=writer)
        assert warehouse_submissions(paths) == published, "the published warehouse moved"
    rebuild_limit = rng.randint(64 * KIB, largest_file(data_dir, "iozen.duckdb") // 2)
    published = warehouse_submissions(paths)
    outcome = run_command(["rebuild"], env, limit=rebuild_limit)
    check_failed_cleanly(outcome, data_dir, ledger, limit=rebuild_limit, expected="DuckDB writer")
    assert warehouse_submissions(paths) == published, "the published warehouse moved"
    final = run_command(["sync"], env)
    ledger.said([final.out, final.err])
    assert final.code == 0, final.err
    assert_lake_matches_truth(data_dir, box)
    assert_warehouse_equals_truth(paths, box)
    ledger.count(CATEGORY, "next runs exact")

    # The load alone fails, after its sync committed the new pages: the next sync reads
    # nothing new, and still loads what the failed load left out.
    for bot_id in box.bot_ids():
        box.generate_submissions(bot_id, rng.randint(20, 120))
    (writer, limit), *_ = [fault for fault in sync_faults(rng, data_dir) if "DuckDB" in fault[0]]
    failed = run_command(["sync"], env, limit=limit)
    check_failed_cleanly(failed, data_dir, ledger, limit=limit, expected=writer)
    caught_up = run_command(["sync"], env)
    ledger.said([caught_up.out, caught_up.err])
    assert caught_up.code == 0, caught_up.err
    assert "an earlier load did not publish" in caught_up.err, caught_up.err
    assert_warehouse_equals_truth(paths, box)
    ledger.count(CATEGORY, "next runs exact")


def sync_faults(rng: random.Random, data_dir: Path) -> list[tuple[str, int]]:
    """A limit per writer of a sync, drawn from the range that lands the failure there, from
    the sizes of the files as they are now (the publish's fault is a read-only folder)."""
    writer_db = largest_file(data_dir / "warehouse", "iozen_write.duckdb")
    return [
        # Below the shared-memory index SQLite keeps beside the state file's WAL.
        ("state file", rng.randint(4 * KIB, SQLITE_SHM - 1)),
        # Past that, and below the ten-page files of a bot's submissions and answers.
        ("Parquet lake", rng.randint(SQLITE_SHM, 48 * KIB)),
        ("DuckDB writer", rng.randint(writer_db // 8, writer_db // 3)),
        ("publish", 0),
    ]


def onboarding_bot(sandbox: Sandbox) -> str:
    return str(next(b["id"] for b in sandbox.truth_bots() if b["name"] == "Customer Onboarding"))


@pytest.mark.slow
def test_replay_fails_cleanly_when_its_ledger_or_rejects_cannot_grow_and_reruns_exactly_once(
    tmp_path: Path, ledger: Ledger, long_run: bool
) -> None:
    server = serve(Sandbox(SandboxConfig(seed=3, bots=2, submissions_per_bot=1)))
    try:
        box = server.sandbox
        bot = onboarding_bot(box)
        seeded = {str(s["id"]) for s in box.truth_submissions(bot)}
        data_dir = tmp_path / "data"
        env = environment(server, data_dir)
        ledger.watch(box.api_key, data_dir, tmp_path)
        rng = random.Random(SEED)
        rounds = iterations(1, 4, long_run=long_run)
        valid = onboarding_rows(30 * rounds)
        # Rows with a long cell that is not a number: rejected, and copied to the rejects file
        # as they were read, so that file grows faster than the ledger.
        bad = [
            [f"Bad {i}", f"bad{i}@example.com", "n" * 40 * KIB, "2026-07-01", "low", "crm", "yes"]
            for i in range(4)
        ]
        rows = bad + valid
        csv_path = write_csv(tmp_path / "in.csv", HEADER, rows)
        args = ["replay", str(csv_path), "--bot", bot, "--concurrency", "4"]
        for _ in range(rounds):
            for writer, limit in (
                ("rejects file", rng.randint(60 * KIB, 100 * KIB)),
                ("state file", rng.randint(4 * KIB, SQLITE_SHM - 1)),
                # Past the rejects file's size: the ledger's log fills up in mid-file.
                ("state file", rng.randint(200 * KIB, 300 * KIB)),
            ):
                outcome = run_command(args, env, limit=limit)
                check_failed_cleanly(outcome, tmp_path, ledger, limit=limit, expected=writer)
        final = run_command(args, env)
        ledger.said([final.out, final.err])
        # 3: worked through, but some rows (the bad ones) need a person.
        assert final.code == 3, final.err
        made = Counter(
            str(s["data"]["email"]) for s in box.truth_submissions(bot) if s["id"] not in seeded
        )
        assert made == Counter(str(row[1]) for row in valid), "a row created twice or never"
        rejected = read_csv(csv_path.with_name("in.rejects.csv"))
        assert [int(r["_row"]) for r in rejected] == [2 + i for i in range(len(bad))]
        ledger.count(CATEGORY, "next runs exact")
    finally:
        server.close()
