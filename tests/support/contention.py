"""Writers and readers at once: ``iozen-etl sync`` in its own process, a UI backfill through
Dagster's GraphQL and backfill daemon, and analysts reading the published warehouse in a loop.

The backfill is ``tests.support.backfill``'s, as the UI launches one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import run_query

REPO = Path(__file__).resolve().parents[2]

# One query, so one snapshot: what a reader checks in every snapshot it sees.
SNAPSHOT_SQL = """
with per_bot as (select intake_bot_id, count(*) as n from submissions group by all)
select
  (select count(*) from submission_answers a
    where a.submission_id not in (select id from submissions)) as orphan_answers,
  (select count(*) from submissions s
    where s.intake_bot_id not in (select id from intake_bots)) as orphan_submissions,
  (select coalesce(max(load_id), 0) from load_runs) as load_id,
  (select coalesce(list({'bot': intake_bot_id, 'n': n}), []) from per_bot) as per_bot
"""
# Top-level keys the project's dagster.yaml does not set.
IN_PROCESS_LAUNCHER = """
run_coordinator:
  module: dagster._core.run_coordinator.sync_in_memory_run_coordinator
  class: SyncInMemoryRunCoordinator
run_launcher:
  module: dagster._core.launcher.sync_in_memory_run_launcher
  class: SyncInMemoryRunLauncher
"""
SNAPSHOT_COLUMNS = ("orphan_answers", "orphan_submissions", "load_id", "per_bot")


def dagster_home(folder: Path, *, in_process_launcher: bool = False) -> Path:
    """A Dagster instance folder with the project's ``dagster.yaml`` (pools, run retries).

    ``in_process_launcher``: runs that the backfill daemon launches run in the launching
    thread (Dagster's synchronous coordinator and launcher), so a test drives the daemon.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", folder)
    if in_process_launcher:
        with (folder / "dagster.yaml").open("a") as config:
            config.write(IN_PROCESS_LAUNCHER)
    return folder


def start_sync(
    base_url: str, api_key: str, data_dir: Path, home: Path, *args: str
) -> subprocess.Popen[str]:
    """``iozen-etl sync`` in a process of its own, as a person or a cron job starts it."""
    env = {
        **os.environ,
        "IOZEN_API_KEY": api_key,
        "IOZEN_BASE_URL": base_url,
        "IOZEN_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(REPO),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "iozen_etl", "sync", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass
class Snapshot:
    """What one query saw of one published snapshot."""

    orphan_answers: int
    orphan_submissions: int
    load_id: int
    per_bot: dict[str, int]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Snapshot:
        orphan_answers, orphan_submissions, load_id, per_bot = row
        counts = {str(item["bot"]): int(item["n"]) for item in per_bot or []}
        return cls(int(orphan_answers), int(orphan_submissions), int(load_id), counts)


@dataclass
class ReaderTally:
    """One reader's queries, and every way a snapshot it saw was wrong."""

    queries: int = 0
    inconsistent: list[str] = field(default_factory=list)
    lock_errors: list[str] = field(default_factory=list)
    other_errors: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # everything it printed or raised
    last: Snapshot | None = None

    def saw(self, snapshot: Snapshot) -> None:
        """Check one snapshot on its own and against the one this reader saw before it."""
        self.queries += 1
        problems = []
        if snapshot.orphan_answers:
            problems.append(f"{snapshot.orphan_answers} answers of no submission")
        if snapshot.orphan_submissions:
            problems.append(f"{snapshot.orphan_submissions} submissions of no bot")
        before = self.last
        if before is not None:
            if snapshot.load_id < before.load_id:
                problems.append(f"load {snapshot.load_id} after load {before.load_id}")
            fewer = {
                bot: (n, snapshot.per_bot.get(bot, 0))
                for bot, n in before.per_bot.items()
                if snapshot.per_bot.get(bot, 0) < n
            }
            if fewer:
                problems.append(f"bots with fewer submissions than before: {fewer}")
        if problems:
            self.inconsistent.append(f"load {snapshot.load_id}: " + "; ".join(problems))
        self.last = snapshot

    def failed(self, text: str) -> None:
        self.queries += 1
        self.texts.append(text)
        if "lock" in text.lower():
            self.lock_errors.append(text)
        else:
            self.other_errors.append(text)


def read_in_process(paths: DataPaths, tally: ReaderTally) -> None:
    """One query through the package's read API (what ``dataframe`` and ``iozen-etl sql`` use)."""
    try:
        result = run_query(paths, SNAPSHOT_SQL)
    except Exception as error:  # every failure counts; none is expected
        tally.failed(f"{type(error).__name__}: {error}")
        return
    tally.saw(Snapshot.from_row(result.rows[0]))


def read_with_command(data_dir: Path, tally: ReaderTally) -> None:
    """One ``iozen-etl sql --format json`` in a process of its own, as an analyst runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "iozen_etl", "sql", "--format", "json", SNAPSHOT_SQL],
        env={**os.environ, "IOZEN_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    tally.texts.extend([done.stdout, done.stderr])
    if done.returncode != 0:
        tally.failed(f"exit {done.returncode}: {done.stderr.strip()}")
        return
    (record,) = json.loads(done.stdout)
    tally.saw(Snapshot.from_row([record[name] for name in SNAPSHOT_COLUMNS]))


class Loop(threading.Thread):
    """Calls ``step`` until stopped, pausing ``pause_s`` between calls; keeps what it raised."""

    def __init__(self, step: Callable[[], None], pause_s: float) -> None:
        super().__init__(daemon=True)
        self.step = step
        self.pause_s = pause_s
        self.stopping = threading.Event()
        self.calls = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception as error:  # kept for the test to report; the loop goes on
                self.errors.append(f"{type(error).__name__}: {error}")
            self.calls += 1
            self.stopping.wait(self.pause_s)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=120)
        assert not self.is_alive(), "a loop did not stop"
