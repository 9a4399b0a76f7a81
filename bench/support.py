"""What several benchmarks share: a sandbox served by its own process."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server a benchmark starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child that imports the repository's code, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@contextlib.contextmanager
def sandbox_process(*options: str) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of a sandbox served by a child process until the block ends."""
    child = subprocess.Popen(
        [sys.executable, "-m", "iozen_etl", "sandbox", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        found: dict[str, str] = {}
        while len(found) < 2:
            line = child.stdout.readline()
            if not line:
                raise RuntimeError("the sandbox exited before printing its address")
            name, _, value = line.strip().partition("=")
            if name in ("IOZEN_BASE_URL", "IOZEN_API_KEY"):
                found[name] = value
        yield found["IOZEN_BASE_URL"], found["IOZEN_API_KEY"]
    finally:
        child.terminate()
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()


# Runs the command in argv[1:] and prints the peak RSS (KiB) and CPU seconds of that child alone.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print('PEAK_RSS_KB=%d' % usage.ru_maxrss)\n"
    "print('CPU_S=%.3f' % (usage.ru_utime + usage.ru_stime))\n"
    "sys.exit(code)\n"
)


def new_dagster_home(scratch: Path) -> Path:
    """A new workspace's Dagster instance: the project's dagster.yaml (SQLite storage, as
    `make ui` uses), empty, so no earlier run's bots are partitions there."""
    home = scratch / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    return home


@dataclass(frozen=True)
class Measured:
    """A child process's own figures, and what it printed."""

    wall_s: float
    peak_rss_mb: float
    cpu_s: float
    lines: list[str]


def measured_run(command: Sequence[str], env: Mapping[str, str]) -> Measured:
    """Run ``command`` under a small parent that reports the child's peak RSS and CPU time
    (the parent is small, so the child's ``ru_maxrss`` inherits nothing large from it)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[-1]} failed ({done.returncode}): {done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()

    def figure(name: str) -> str:
        return next(line for line in lines if line.startswith(name + "=")).split("=")[1]

    return Measured(wall, int(figure("PEAK_RSS_KB")) / 1024, float(figure("CPU_S")), lines)


def run_ids(home: Path) -> set[str]:
    """The ids of every run a Dagster instance holds."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return {run.run_id for run in instance.get_runs()}


def new_runs_logs(home: Path, runs_before: set[str]) -> tuple[int, list[Any]]:
    """How many runs the instance at ``home`` holds beyond ``runs_before``, and their log
    entries."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = [run for run in instance.get_runs() if run.run_id not in runs_before]
        return len(runs), [entry for run in runs for entry in instance.all_logs(run.run_id)]


def asset_record(entry: Any) -> Any | None:
    """The asset materialization or observation a log entry holds, else None."""
    event = entry.dagster_event
    if event is None:
        return None
    if event.is_step_materialization:
        return event.step_materialization_data.materialization
    if event.is_asset_observation:
        return event.asset_observation_data.asset_observation
    return None
