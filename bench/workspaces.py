"""Several workspaces at once: ``iozen-etl sync --workspace NAME`` for 1, 2 and 4 rate-limited
workspaces started together, against the slowest workspace synced alone, measured in the same run.

Each workspace is a sandbox of its own seed, served by its own process, with its own key and so
its own rate budget; the workspaces file names them all. A deployment runs each workspace's sync
as its own run (its own pool ``iozen-<name>``), so N workspaces at once should take about as long
as the slowest one alone. Every command is its own process, with no ``DAGSTER_HOME`` (each uses a
throwaway instance) and a new data directory per measurement; all must exit 0, and each
workspace's ``<name>.submissions`` in the published ``iozen.duckdb`` must count what its sandbox
holds. Requests are counted by the sandboxes; 429s are the syncs' own count (their summary line).

Sizes: the sandboxes keep ioZen's 60 s window, since iozen-etl's client paces itself by that
window and has no setting for another (a shorter sandbox window would leave the client pacing
at 60 s anyway: it would measure that assumption, not several workspaces). The limit is small
instead: 20 requests a window, and each workspace needs about 2.5 windows' worth (56 to 58
requests: 4 bots of 1,200 submissions on average, so about 50 pages of 100, the bot listing and
details, the webhooks list). Its first sync then spends two whole windows waiting for its
budget and a few seconds of CPU: bounded by the budget, not by the machine, while seven
measurements (and the waits for empty windows between them) keep the area to about 17 minutes.
The seeds skew the bots differently, so the four differ a little and the slowest sets the
baseline.

Run: ``python -m bench workspaces``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx

from bench import support
from bench.compare import api_requests


@dataclass(frozen=True)
class Shape:
    """A sandbox workspace: ``bots`` bots of ``per_bot`` submissions on average."""

    seed: int
    bots: int
    per_bot: int


@dataclass(frozen=True)
class Plan:
    """The workspaces (in the order the counts take them), the counts run at once, the budget."""

    shapes: Mapping[str, Shape]
    counts: tuple[int, ...]
    rate_limit: int
    window_s: float


FULL = Plan(
    shapes={
        "acme": Shape(seed=31, bots=4, per_bot=1200),
        "globex": Shape(seed=32, bots=4, per_bot=1200),
        "initech": Shape(seed=33, bots=4, per_bot=1200),
        "umbrella": Shape(seed=34, bots=4, per_bot=1200),
    },
    counts=(1, 2, 4),
    rate_limit=20,
    window_s=60.0,
)


@dataclass(frozen=True)
class Served:
    """One workspace's sandbox process."""

    name: str
    base_url: str
    api_key: str

    @property
    def key_env(self) -> str:
        return key_env(self.name)

    def submissions(self) -> int:
        with httpx.Client(base_url=self.base_url.removesuffix("/api/v1"), timeout=120) as admin:
            return len(admin.get("/_sandbox/truth/submissions").json()["data"])


@contextmanager
def served(plan: Plan) -> Iterator[dict[str, Served]]:
    """Every workspace of the plan served by its own rate-limited sandbox process."""
    with ExitStack() as stack:
        members = {}
        for name, shape in plan.shapes.items():
            base_url, api_key = stack.enter_context(
                support.sandbox_process(
                    *("--seed", str(shape.seed), "--bots", str(shape.bots)),
                    *("--submissions-per-bot", str(shape.per_bot)),
                    *("--rate-limit", str(plan.rate_limit), "--window-s", f"{plan.window_s:g}"),
                )
            )
            members[name] = Served(name, base_url, api_key)
        yield members


def key_env(name: str) -> str:
    """The variable that holds the workspace ``name``'s key."""
    return f"IOZEN_KEY_{name.upper()}"


def write_workspaces_file(path: Path, base_urls: Mapping[str, str]) -> None:
    """A workspaces file naming each workspace (name -> its API's base URL) and ``key_env``."""
    path.write_text(
        "".join(
            f'[workspaces.{name}]\napi_key_env = "{key_env(name)}"\nbase_url = "{url}"\n\n'
            for name, url in base_urls.items()
        ),
        encoding="utf-8",
    )


def sync_at_once(
    names: Sequence[str], members: Mapping[str, Served], workspaces_file: Path, scratch: Path
) -> dict[str, Any]:
    """``iozen-etl sync --workspace NAME`` for each name, each its own process, all started
    together into a new data directory; wall time to the last one's end, and each workspace's
    requests, 429s, CPU and peak RSS. Raises unless every command exits 0 and every workspace's
    warehouse schema holds its sandbox's submissions."""
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=scratch))
    env = support.child_env(
        IOZEN_WORKSPACES_FILE=str(workspaces_file),
        IOZEN_DATA_DIR=str(data_dir),
        **{m.key_env: m.api_key for m in members.values()},
    )
    # Each command on a throwaway instance of its own; no workspace from the environment.
    env.pop("DAGSTER_HOME", None)
    env.pop("IOZEN_API_KEY", None)
    requests_before = {name: api_requests(members[name].base_url) for name in names}
    # What else the machine was running (another benchmark makes the figures noisy).
    load_before = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        futures = {
            name: pool.submit(
                support.measured_run,
                [sys.executable, "-m", "iozen_etl", "sync", "--workspace", name],
                env,
            )
            for name in names
        }
        measured = {name: future.result() for name, future in futures.items()}
    wall_s = time.perf_counter() - started
    cpu_s = sum(m.cpu_s for m in measured.values())
    figures: dict[str, Any] = {
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        # The share of the machine the commands kept busy over the wall time.
        "cpu_share": round(cpu_s / (wall_s * (os.cpu_count() or 1)), 3),
        "load_before": load_before,
        "workspaces": {},
    }
    for name in names:
        stored, truth = warehouse_submissions(data_dir, name), members[name].submissions()
        if stored != truth:
            raise RuntimeError(
                f"workspace {name}: {stored} submissions in its schema, {truth} in its sandbox"
            )
        figures["workspaces"][name] = {
            "wall_s": round(measured[name].wall_s, 2),
            "cpu_s": round(measured[name].cpu_s, 2),
            "peak_rss_mb": round(measured[name].peak_rss_mb, 1),
            "requests": api_requests(members[name].base_url) - requests_before[name],
            "http_429": summary_429s(measured[name].lines),
            "submissions": stored,
        }
    return figures


def warehouse_submissions(data_dir: Path, name: str) -> int:
    con = duckdb.connect(str(data_dir / "iozen.duckdb"), read_only=True)
    try:
        row = con.execute(f'select count(*) from "{name}".submissions').fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def summary_429s(lines: Sequence[str]) -> int:
    """The 429 answers the sync's summary reports (its submissions step: the one that spends
    the budget; the bot listing and details fit in the first window)."""
    for line in lines:
        found = re.fullmatch(r"\s*429 answers\s+(\d+)", line)
        if found:
            return int(found.group(1))
    raise RuntimeError("the sync's summary has no 429 line")


def run(plan: Plan = FULL) -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    names = list(plan.shapes)
    results: dict[str, Any] = {
        "cpus": cpus,
        "rate_limit": plan.rate_limit,
        "window_s": plan.window_s,
        "shapes": {name: vars(shape) for name, shape in plan.shapes.items()},
    }
    with (
        served(plan) as members,
        tempfile.TemporaryDirectory(prefix="iozen-bench-workspaces-") as folder,
    ):
        scratch = Path(folder)
        workspaces_file = scratch / "workspaces.toml"
        write_workspaces_file(workspaces_file, {m.name: m.base_url for m in members.values()})
        # The first process to import Dagster reads it from disk; none of the measured ones should.
        subprocess.run(
            [sys.executable, "-c", "import iozen_etl.definitions"],
            env=support.child_env(),
            check=True,
        )
        print(
            f"{len(names)} workspaces, each {plan.rate_limit} requests per {plan.window_s:g} s; "
            f"{cpus} CPUs",
            flush=True,
        )
        # A window still holding a workspace's last requests would refuse the next sync's
        # first ones (its new process cannot know them until the first answers say so): each
        # measurement starts once its workspaces' windows are empty, as a scheduled sync finds them.
        quiet_from = dict.fromkeys(names, 0.0)

        def measure(chosen: Sequence[str]) -> dict[str, Any]:
            time.sleep(max(0.0, max(quiet_from[name] for name in chosen) - time.monotonic()))
            figures = sync_at_once(chosen, members, workspaces_file, scratch)
            for name in chosen:
                quiet_from[name] = time.monotonic() + plan.window_s + 1.0
            return figures

        alone = {}
        for name in names:
            alone[name] = figures = measure([name])
            print(f"  {name} alone: {describe(figures)}", flush=True)
        slowest = max(names, key=lambda name: alone[name]["wall_s"])
        baseline_s = alone[slowest]["wall_s"]
        results["alone"] = alone
        results["slowest_alone"] = {"workspace": slowest, "wall_s": baseline_s}
        print(f"  baseline: {slowest} alone, {baseline_s:.1f} s", flush=True)
        for count in plan.counts:
            figures = measure(names[:count])
            figures["ratio_to_slowest_alone"] = round(figures["wall_s"] / baseline_s, 2)
            results[f"at_once_{count}"] = figures
            print(
                f"  {count} at once: {figures['ratio_to_slowest_alone']:.2f}x the slowest alone; "
                f"{describe(figures)}",
                flush=True,
            )
    return results


def describe(figures: Mapping[str, Any]) -> str:
    each = "; ".join(
        f"{name} {w['wall_s']:.1f} s, {w['requests']} requests, {w['http_429']} x 429, "
        f"{w['cpu_s']:.1f} s CPU"
        for name, w in figures["workspaces"].items()
    )
    return (
        f"{figures['wall_s']:.1f} s wall, {figures['cpu_s']:.1f} s CPU "
        f"({figures['cpu_share']:.0%} of the machine; load {figures['load_before']} before) "
        f"[{each}]"
    )


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
