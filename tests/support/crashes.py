"""What the crash tests do around their kills: move the world a little, pick the moment, and
look at what a killed run left behind (the published snapshot, the rows the API holds)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from iozen_etl.sandbox import Sandbox
from iozen_etl.settings import DataPaths
from tests.support.children import Child, Command
from tests.support.reliability import Ledger

CATEGORY = "crashes"


def nudge_world(sandbox: Sandbox, rng: random.Random) -> None:
    """New submissions in one or two bots, an IN_PROGRESS one completed or edited, and now and
    then a new bot: each run after a kill has new work, read through every path of a sync."""
    sandbox.clock.advance(30)
    bots = sandbox.bot_ids()
    for bot in rng.sample(bots, k=min(len(bots), rng.randint(1, 2))):
        sandbox.generate_submissions(bot, rng.randint(5, 60))
        sandbox.clock.advance(1)
    in_progress = [s for s in sandbox.truth_submissions() if s["status"] == "IN_PROGRESS"]
    if in_progress:
        chosen = rng.choice(in_progress)
        if rng.random() < 0.5:
            sandbox.update_submission(chosen["intake_bot_id"], chosen["id"], status="COMPLETED")
        else:
            sandbox.update_submission(chosen["intake_bot_id"], chosen["id"], data={"notes": "x"})
        sandbox.clock.advance(1)
    if rng.random() < 0.1:
        bot = sandbox.add_bot(f"Crash Bot {len(bots)}")
        sandbox.clock.advance(1)
        sandbox.generate_submissions(bot, rng.randint(1, 30))
    sandbox.clock.advance(30)


def wait_for(child: Child | Command, moment: Callable[[], bool], timeout: float) -> None:
    """Return once ``moment()`` holds or the child has ended."""
    deadline = time.monotonic() + timeout
    while not moment() and child.running():
        assert time.monotonic() < deadline, f"the moment to kill never came in {timeout} s"
        time.sleep(0.0005)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_ctime_ns


def appears(path: Path) -> Callable[[], bool]:
    """A moment: ``path`` exists and is not the file that was there before (a killed run's
    leftover under the same name does not count)."""
    before = _identity(path)

    def now() -> bool:
        found = _identity(path)
        return found is not None and found != before

    return now


def requests_after(sandbox: Sandbox, count: int) -> Callable[[], bool]:
    """A moment: the sandbox has had more than ``count`` requests."""
    return lambda: sandbox.request_count() > count


def kill_when(child: Child | Command, moment: Callable[[], bool], timeout: float) -> bool:
    """SIGKILL the child as soon as ``moment()`` holds (or once it has ended); True if the
    kill is what ended it."""
    wait_for(child, moment, timeout)
    return child.kill()


@dataclass(frozen=True)
class Snapshot:
    """The published file as a new analyst finds it: no count when there is none yet."""

    submissions: int | None
    error: str | None = None


def open_published(paths: DataPaths) -> Snapshot:
    """Open the published warehouse read-only and ask it a question, as an analyst would."""
    if not paths.published_db.exists():
        return Snapshot(None)
    try:
        con = duckdb.connect(str(paths.published_db), read_only=True)
        try:
            row = con.execute("select count(*) from submissions").fetchone()
        finally:
            con.close()
    except duckdb.Error as error:
        return Snapshot(None, f"{type(error).__name__}: {error}")
    assert row is not None
    return Snapshot(int(row[0]))


@dataclass
class Kills:
    """What one seeded loop of kills did, and what it found after each kill."""

    name: str
    seed: int
    killed: Counter[str] = field(default_factory=Counter)  # kills by where they landed
    finished: int = 0  # runs that ended before their kill moment
    failed_to_open: list[str] = field(default_factory=list)
    went_backwards: list[str] = field(default_factory=list)
    published: int = 0  # submissions in the last snapshot seen

    @property
    def total(self) -> int:
        return sum(self.killed.values())

    def check_published(self, paths: DataPaths) -> None:
        """The published file opens read-only and answers, with no fewer rows than before
        (the tests' worlds only grow)."""
        snapshot = open_published(paths)
        if snapshot.error is not None:
            self.failed_to_open.append(f"after kill {self.total}: {snapshot.error}")
        elif snapshot.submissions is not None:
            if snapshot.submissions < self.published:
                self.went_backwards.append(
                    f"after kill {self.total}: {snapshot.submissions} < {self.published}"
                )
            self.published = snapshot.submissions

    def record(self, ledger: Ledger) -> None:
        ledger.count(CATEGORY, "kill points survived", self.total)
        for where, n in sorted(self.killed.items()):
            ledger.count(CATEGORY, f"{where} kills", n)
        ledger.count(CATEGORY, "published file failed to open", len(self.failed_to_open))

    def assert_held(self, wanted: int) -> None:
        context = f"{self.name} kills, seed {self.seed}"
        assert not self.failed_to_open, f"{context}: {self.failed_to_open}"
        assert not self.went_backwards, f"{context}: a snapshot lost rows {self.went_backwards}"
        assert self.total >= wanted, (
            f"{context}: {self.total} of {wanted} kills landed ({self.finished} runs ended "
            "before their kill moment)"
        )


@dataclass(frozen=True)
class RowCount:
    """Keys the source holds that the copy lacks, and copies beyond the first."""

    lost: int
    duplicated: int


def count_rows(expected: Iterable[object], found: Iterable[object]) -> RowCount:
    """The keys that should each be found once, against the keys found (with repeats)."""
    seen = Counter(found)
    return RowCount(
        lost=sum(1 for key in set(expected) if seen[key] == 0),
        duplicated=sum(n - 1 for n in seen.values() if n > 1),
    )


def record_rows(ledger: Ledger, counted: RowCount) -> None:
    ledger.count(CATEGORY, "rows lost", counted.lost)
    ledger.count(CATEGORY, "rows duplicated", counted.duplicated)


def replayed_rows(sandbox: Sandbox, bot_id: str, seeded: set[str]) -> list[int]:
    """The CSV row behind each submission made since seeding (``onboarding_rows`` gives each
    row its own team_size)."""
    return [
        int(s["data"]["team_size"])
        for s in sandbox.truth_submissions(bot_id)
        if s["id"] not in seeded
    ]
