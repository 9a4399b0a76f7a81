"""Child processes for the crash tests to kill: a sync (then its load), a load, a replay.

Each child is a real process, ended by a real SIGKILL. They are forked from a multiprocessing
fork server that imported the engines once, so a child starts in milliseconds instead of
paying Python's start-up and the imports of pyarrow, DuckDB and httpx every time (a seeded
loop starts dozens). A child does what the product's asset or command does, through the same
public functions: ``run_pipeline`` (``sync_bots``, ``sync_submissions``, ``sync_webhooks``,
``load_warehouse``), ``load_warehouse``, ``replay_csv``. The key reaches a child as an
argument over the fork server's pipe, never on a command line or in a file.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from iozen_etl.api import IozenClient
from iozen_etl.replay.engine import replay_csv
from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import load_warehouse
from iozen_etl.warehouse.load import lock_path
from tests.support.variants import run_pipeline

REPO = Path(__file__).resolve().parents[2]
_FORK_SERVER = multiprocessing.get_context("forkserver")
# Imported once by the fork server; every child it forks has them already.
_FORK_SERVER.set_forkserver_preload([__name__])


def _output_to(path: str) -> None:
    """The child's stdout and stderr (and so any traceback) go to ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def sync_child(output: str, data_dir: str, base_url: str, api_key: str) -> None:
    """Bots, submissions and webhooks into the lake, then the warehouse load."""
    _output_to(output)
    with IozenClient(api_key, base_url) as client:
        report = run_pipeline(client, DataPaths(Path(data_dir)))
    print(f"sync: loaded {report.load.load_id}, published {report.load.published}")


def load_child(output: str, data_dir: str) -> None:
    _output_to(output)
    report = load_warehouse(DataPaths(Path(data_dir)))
    print(f"load {report.load_id}: published {report.published}")
    print(f"publish_s={report.seconds['publish']}")


def publish_seconds(said: str) -> float:
    """How long the publication of a finished ``load_child`` took, from what it said."""
    return float(said.rsplit("publish_s=", 1)[1].split()[0])


def replay_child(
    output: str, data_dir: str, base_url: str, api_key: str, csv_path: str, bot_id: str
) -> None:
    _output_to(output)
    with IozenClient(api_key, base_url) as client:
        report = replay_csv(
            client, DataPaths(Path(data_dir)), csv_path, bot_id=bot_id, concurrency=4
        )
    print(report.summary())
    if not report.complete:
        sys.exit(1)


@dataclass
class Child:
    """A started child: killed, or waited for, then its output read."""

    process: BaseProcess
    output: Path

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> bool:
        """SIGKILL now; True if that is what ended it (False: it had finished first)."""
        self.process.kill()  # does nothing once the child's end has been seen
        self.process.join()
        return self.process.exitcode == -signal.SIGKILL

    def wait(self, timeout: float) -> int:
        self.process.join(timeout)
        assert self.process.exitcode is not None, f"the child ran past {timeout} s"
        return self.process.exitcode

    def said(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""


def start(target: Callable[..., None], output: Path, *args: str) -> Child:
    """Fork ``target(output, *args)`` from the fork server."""
    process = _FORK_SERVER.Process(target=target, args=(str(output), *args), daemon=True)
    process.start()
    return Child(process, output)


@dataclass
class Command:
    """The real ``python -m iozen_etl COMMAND``, with the same handles as a ``Child``."""

    popen: subprocess.Popen[bytes]
    output: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> bool:
        """SIGKILL now; True if that is what ended it (False: it had finished first)."""
        self.popen.send_signal(signal.SIGKILL)  # does nothing once it has been waited for
        return self.popen.wait() == -signal.SIGKILL

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def said(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""


def iozen_etl(command: str, args: list[str], env: dict[str, str], output: Path) -> Command:
    """``python -m iozen_etl COMMAND ARGS`` with ``env`` added, output to ``output``, in a
    session of its own: whatever it starts shares its process group, found by its pid."""
    with output.open("ab") as handle:
        popen = subprocess.Popen(
            [sys.executable, "-m", "iozen_etl", command, *args],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = Command(popen, output)
    _commands.append(started)
    return started


_commands: list[Command] = []


def kill_leftovers() -> None:
    """SIGKILL every command still running (a test that failed half-way leaves them)."""
    while _commands:
        _commands.pop().kill()


def live_in_group(group: int) -> list[int]:
    """Processes of a process group that are still running (zombies waiting to be reaped
    have finished, and are left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == group and state != "Z":
            found.append(int(entry.name))
    return found


def wait_until_gone(group: int, timeout: float) -> list[int]:
    """The group's live processes once none is left or ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    left = live_in_group(group)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = live_in_group(group)
    return left


_FLOCK = re.compile(r"^\d+: FLOCK\s+\S+\s+WRITE\s+(\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s", re.M)


def load_lock_holder(paths: DataPaths) -> int | None:
    """The pid holding the warehouse's writer lock, read from /proc/locks (asking for the
    lock would take it)."""
    try:
        inode = lock_path(paths).stat().st_ino
    except FileNotFoundError:
        return None
    for match in _FLOCK.finditer(Path("/proc/locks").read_text()):
        if int(match.group(2)) == inode:
            return int(match.group(1))
    return None
