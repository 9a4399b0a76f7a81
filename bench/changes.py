"""What a run costs against what changed: ``iozen-etl sync`` (Dagster on a new SQLite instance,
the lake, the warehouse load) over a first sync, a sync with nothing changed and syncs with a
few changes, each split into start-up, engine, load and Dagster time, with the API requests
made and the Dagster events written.

The baseline is the start-up every command pays: a Python process that imports
``iozen_etl.definitions``, measured in the same run. Requests are counted by the sandbox (its
own process); events are read back from the instance the command wrote to.

Run: ``python -m bench changes``.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx

from bench import support
from bench.pipeline import timed_cli_sync
from bench.support import child_env
from bench.sync import UNLIMITED

WIDE_BOTS = 1000
WIDE_PER_BOT = 100


def startup_baseline(rounds: int = 3) -> float:
    """Median wall time of a process that imports the Dagster definitions and exits."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import iozen_etl.definitions"], env=child_env(), check=True
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class Workspace:
    """A sandbox process, a data directory and a new Dagster instance (the project's
    dagster.yaml), and the figures of each ``iozen-etl sync`` run against them."""

    def __init__(self, base_url: str, api_key: str, scratch: Path) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.admin = httpx.Client(base_url=base_url.removesuffix("/api/v1"), timeout=120)
        self.data_dir = scratch / "data"
        self.home = support.new_dagster_home(scratch)

    def requests(self) -> int:
        """API requests so far: every request the sandbox counted, less its admin routes (each
        read of the count is one, and the second read below is not in the first)."""
        every: int = self.admin.get("/_sandbox/requests").json()["data"]["count"]
        params = {"route": "admin"}
        admin: int = self.admin.get("/_sandbox/requests", params=params).json()["data"]["count"]
        return every - admin + 1

    def truth(self) -> list[dict[str, Any]]:
        subs: list[dict[str, Any]] = self.admin.get("/_sandbox/truth/submissions").json()["data"]
        return subs

    def generate(self, bot_id: str, n: int) -> None:
        body = {"bot_id": bot_id, "n": n, "status": "COMPLETED"}
        self.admin.post("/_sandbox/generate", json=body).raise_for_status()

    def complete(self, sub: dict[str, Any]) -> None:
        body = {"bot_id": sub["intake_bot_id"], "submission_id": sub["id"], "status": "COMPLETED"}
        self.admin.post("/_sandbox/update", json=body).raise_for_status()

    def bot_ids(self) -> list[str]:
        bots = self.admin.get("/_sandbox/truth/bots").json()["data"]
        return [bot["id"] for bot in bots]

    def sync(self, startup_s: float) -> dict[str, Any]:
        """One ``iozen-etl sync`` in a child process, and what it cost."""
        runs_before = support.run_ids(self.home)
        requests_before = self.requests()
        measured = timed_cli_sync(self.base_url, self.api_key, self.data_dir, self.home)
        requests = self.requests() - requests_before
        runs, logs = support.new_runs_logs(self.home, runs_before)
        engine_s = load_s = 0.0
        materialized = 0
        for entry in logs:
            record = support.asset_record(entry)
            if record is None:
                continue
            if record.partition is not None:
                materialized += entry.dagster_event.is_step_materialization
                continue
            facts = {key: value.value for key, value in record.metadata.items()}
            elapsed = facts.get("elapsed_s", facts.get("run/elapsed_s"))
            engine_s += float(elapsed) if isinstance(elapsed, int | float) else 0.0
            total = facts.get("seconds_total")
            load_s += float(total) if isinstance(total, int | float) else 0.0
        wall = measured["wall_s"]
        return {
            "wall_s": round(wall, 2),
            "startup_s": round(startup_s, 2),
            "engine_s": round(engine_s, 2),
            "load_s": round(load_s, 2),
            "dagster_s": round(max(0.0, wall - startup_s - engine_s - load_s), 2),
            "runs": runs,
            "events": len(logs),
            "bot_partitions_materialized": materialized,
            "requests": requests,
            "peak_rss_mb": round(measured["peak_rss_mb"], 1),
            "cpu_s": round(measured["cpu_s"], 2),
        }

    def warehouse_equals_truth(self) -> bool:
        con = duckdb.connect(str(self.data_dir / "iozen.duckdb"), read_only=True)
        try:
            rows = con.execute(
                "select id, status, strftime(updated_at at time zone 'UTC', "
                "'%Y-%m-%dT%H:%M:%S.%g') || 'Z' from submissions"
            ).fetchall()
        finally:
            con.close()
        stored = {row[0]: (row[1], row[2]) for row in rows}
        return stored == {s["id"]: (s["status"], s["updated_at"]) for s in self.truth()}


@contextlib.contextmanager
def workspace(*options: str) -> Iterator[Workspace]:
    with (
        support.sandbox_process(*options, "--rate-limit", UNLIMITED) as (base_url, api_key),
        tempfile.TemporaryDirectory(prefix="iozen-bench-") as scratch,
    ):
        work = Workspace(base_url, api_key, Path(scratch))
        try:
            yield work
        finally:
            work.admin.close()


def wide(startup_s: float, in_progress_share: str) -> dict[str, Any]:
    """1,000 bots x 100: the first sync, nothing changed, one new submission in one bot."""
    figures: dict[str, Any] = {"bots": WIDE_BOTS, "in_progress_share": float(in_progress_share)}
    options = ("--bots", str(WIDE_BOTS), "--submissions-per-bot", str(WIDE_PER_BOT))
    with workspace(*options, "--in-progress-share", in_progress_share) as work:
        figures["first_sync"] = first = work.sync(startup_s)
        first["dagster_ms_per_bot"] = round(1000 * first["dagster_s"] / WIDE_BOTS, 2)
        figures["no_change"] = work.sync(startup_s)
        work.generate(work.bot_ids()[WIDE_BOTS // 2], 1)
        figures["one_change"] = work.sync(startup_s)
        figures["exact_after"] = work.warehouse_equals_truth()
    return figures


def spread_changes(startup_s: float, in_progress_share: str) -> dict[str, Any]:
    """150 bots; 10 new submissions, each in a different bot."""
    options = ("--bots", "150", "--submissions-per-bot", "60")
    with workspace(*options, "--in-progress-share", in_progress_share) as work:
        work.sync(startup_s)
        for bot_id in work.bot_ids()[::15][:10]:
            work.generate(bot_id, 1)
        figures = work.sync(startup_s)
        figures["exact_after"] = work.warehouse_equals_truth()
        figures["in_progress_share"] = float(in_progress_share)
    return figures


def in_progress_completed(startup_s: float) -> dict[str, Any]:
    """40 bots x 60, a tenth IN_PROGRESS; 15 completed in ioZen, then one incremental sync."""
    options = ("--bots", "40", "--submissions-per-bot", "60", "--in-progress-share", "0.1")
    with workspace(*options) as work:
        work.sync(startup_s)
        waiting = [s for s in work.truth() if s["status"] == "IN_PROGRESS"]
        for sub in waiting[:: max(1, len(waiting) // 15)][:15]:
            work.complete(sub)
        figures = work.sync(startup_s)
        figures["in_progress_before"] = len(waiting)
        figures["exact_after"] = work.warehouse_equals_truth()
    return figures


def demo_second_sync() -> dict[str, Any]:
    """``iozen-etl demo``: the requests of its second sync ("only what changed")."""
    with tempfile.TemporaryDirectory(prefix="iozen-bench-demo-") as scratch:
        done = subprocess.run(
            [sys.executable, "-m", "iozen_etl", "demo", "--data-dir", scratch + "/data"],
            env=child_env(),
            capture_output=True,
            text=True,
            check=True,
        )
    summaries = done.stdout.split("sync summary:")[1:]
    second = summaries[1]
    facts = {}
    for line in second.splitlines():
        label, _, value = line.strip().rpartition(" ")
        if label.strip() in ("API requests", "pages read", "submissions new"):
            facts[label.strip()] = int(value)
    # The summary counts the submissions step; the bot listing and the webhook list add one each.
    return {
        "requests": facts["API requests"] + 2,
        "pages": facts["pages read"],
        "new": facts["submissions new"],
    }


def run() -> dict[str, Any]:
    startup_s = startup_baseline()
    print(f"start-up (import iozen_etl.definitions): {startup_s:.2f} s", flush=True)
    results: dict[str, Any] = {"startup_s": round(startup_s, 2)}
    for share in ("0", "0.15"):
        results[f"wide_in_progress_{share}"] = figures = wide(startup_s, share)
        print(f"1,000 bots, IN_PROGRESS share {share}: {json.dumps(figures)}", flush=True)
        for name in ("no_change", "one_change"):
            ratio = figures[name]["wall_s"] / startup_s
            print(f"  {name}: {ratio:.2f}x start-up, {figures[name]['requests']} requests")
    for share in ("0", "0.15"):
        results[f"spread_in_progress_{share}"] = figures = spread_changes(startup_s, share)
        print(f"10 new over 150 bots, share {share}: {json.dumps(figures)}", flush=True)
    results["in_progress_completed"] = figures = in_progress_completed(startup_s)
    print(f"40 x 60, 15 IN_PROGRESS completed: {json.dumps(figures)}", flush=True)
    results["demo_second_sync"] = figures = demo_second_sync()
    print(f"make demo, second sync: {json.dumps(figures)}", flush=True)
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
