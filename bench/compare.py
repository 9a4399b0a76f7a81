"""iozen-etl side by side with dlt and the bare fetch loop, on the same sandbox data, in one run.

Tools, each in its own child process (wall time, and peak RSS from ``RUSAGE_CHILDREN``: the
largest process of the tool's tree, as ``support.measured_run`` reports it):

- **iozen-etl**: ``iozen-etl sync`` end to end (Dagster in-process, lake, DuckDB load and
  publish; ``bench.pipeline.timed_cli_sync``) with a new data directory and Dagster instance;
- **dlt best** and **dlt incremental**: ``bench.dlt_sync`` (dlt's ``rest_api`` source into its
  own DuckDB file; the setups are described there);
- **bare loop**: ``bench.sync.bare_fetch``, the least any sync must do (it stores nothing).

Scenarios (sandboxes with the same seed, so every tool sees the same data):

- full sync, *deep* (20 bots) and *wide* (1,000 bots), at each size: one read-only sandbox with
  no rate limit, the tools one after another;
- rate-limited: the sandbox's real budget shape (a 60 s sliding window: iozen-etl's client
  assumes ioZen's 60 s window and has no setting for another, so a window scaled down to save
  time would measure that assumption, not the tools), 150 ms latency; each tool against its own
  sandbox, all at once, since the run is spent waiting for the budget;
- incremental: a first sync, then 1 % of submissions added or changed through the sandbox's
  admin routes (half new, a quarter IN_PROGRESS -> COMPLETED, which keeps the listing order, a
  quarter COMPLETED answers edited), then the timed second sync; a fresh sandbox per tool.

After each sync the tool's ``submissions`` table (id, status, updated_at) is compared with the
sandbox's truth. Requests are counted by the sandbox. Results: a table on stdout,
``bench/results/compare.{json,md}``, ``docs/comparison.md`` and ``docs/comparison.png``.

Run: ``python -m bench compare [--quick]`` (``--sizes 100000`` limits the full syncs).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import dlt_sync, support
from bench.support import child_env
from bench.sync import UNLIMITED, bare_fetch
from iozen_etl.sandbox.config import ROUTE_NAMES

IOZEN, DLT_BEST, DLT_INCREMENTAL, BARE = "iozen-etl", "dlt best", "dlt incremental", "bare loop"
TOOLS = (IOZEN, DLT_BEST, DLT_INCREMENTAL, BARE)
SEED = "20261204"
RESULTS = Path(__file__).parent / "results"
DOCS = support.REPO / "docs"
LATENCY_MS = 150
CHANGED_SHARE = 0.01
# Every route the sandbox counts under /api/v1 ("unknown": paths that match none).
API_ROUTES = (*ROUTE_NAMES, "unknown")


@dataclass(frozen=True)
class Shape:
    """A workspace: ``bots`` bots of ``per_bot`` submissions on average (the seed skews them)."""

    name: str
    bots: int
    per_bot: int

    @property
    def total(self) -> int:
        return self.bots * self.per_bot

    def options(self) -> tuple[str, ...]:
        return (
            "--seed",
            SEED,
            "--bots",
            str(self.bots),
            "--submissions-per-bot",
            str(self.per_bot),
        )


def deep(total: int) -> Shape:
    return Shape("deep", 20, total // 20)


def wide(total: int) -> Shape:
    return Shape("wide", 1000, total // 1000)


@dataclass(frozen=True)
class Plan:
    """What one mode runs."""

    sizes: tuple[int, ...]
    full_tools: tuple[str, ...]
    rate_shape: Shape
    rate_limit: int
    rate_window_s: float
    incremental_shape: Shape
    # Run other scenarios while the rate-limited tools wait on their budgets (``overlapped``).
    overlap: bool = False
    notes: list[str] = field(default_factory=list)


FULL = Plan(
    sizes=(100_000, 1_000_000),
    full_tools=(BARE, IOZEN, DLT_BEST, DLT_INCREMENTAL),
    # 50,000 submissions, about 600 requests: six windows of ioZen's pro plan (100 a minute).
    rate_shape=Shape("rate", 100, 500),
    rate_limit=100,
    rate_window_s=60.0,
    incremental_shape=wide(100_000),
)
QUICK = Plan(
    sizes=(100_000,),
    # dlt incremental's first sync is dlt best's work plus a filter on each row: in quick mode
    # it is measured in the rate-limited and incremental scenarios only.
    full_tools=(BARE, IOZEN, DLT_BEST),
    # About 130 requests: just over one window, so each tool meets the limit once.
    rate_shape=Shape("rate", 4, 3000),
    rate_limit=100,
    rate_window_s=60.0,
    incremental_shape=Shape("deep", 10, 1000),
    overlap=True,
    notes=[
        "Quick mode: full syncs at 100,000 only, without dlt incremental; small rate-limited "
        "and incremental scenarios. The rate-limited tools run first; once each has spent its "
        "first window's budget they sleep until the window frees up, and the deep full sync "
        "and then the incremental scenario run in that time, each tool's run only if it ends "
        "before they can wake up (the others wait for them to finish). A rate-limited run "
        "this short spans about one window, so its budget share can pass 100 %: the first "
        "window's whole allowance is there at once."
    ],
)


# Tools ------------------------------------------------------------------------------------


def iozen_sync(base_url: str, api_key: str, work: Path, count_429: bool = False) -> dict[str, Any]:
    """``iozen-etl sync`` against ``work`` (data directory and Dagster instance, created on the
    first call and kept, so a second call is an incremental sync)."""
    from bench.pipeline import timed_cli_sync  # imports duckdb: not in the bare loop's child

    home = work / "dagster_home"
    if not home.exists():
        work.mkdir(parents=True, exist_ok=True)
        support.new_dagster_home(work)
    runs_before = support.run_ids(home)
    figures = timed_cli_sync(base_url, api_key, work / "data", home)
    if count_429:
        figures["http_429"] = iozen_throttled(home, runs_before)
    figures.update(partition_events(home, runs_before))
    return figures


def partition_events(home: Path, runs_before: set[str]) -> dict[str, Any]:
    """Dagster's per-bot events of the runs after ``runs_before``: how many, and the seconds
    from the first to the last (they are written one after another once the engine is done;
    on SQLite each is its own write)."""
    stamps = [
        entry.timestamp
        for entry in support.new_runs_logs(home, runs_before)[1]
        if getattr(support.asset_record(entry), "partition", None) is not None
    ]
    span = max(stamps) - min(stamps) if len(stamps) > 1 else 0.0
    # The first event's own write is not in the span: add the mean gap once.
    per_event = span / (len(stamps) - 1) if len(stamps) > 1 else 0.0
    return {"partition_events": len(stamps), "partition_events_s": round(span + per_event, 2)}


def iozen_throttled(home: Path, runs_before: set[str]) -> int:
    """429 answers iozen-etl met in the runs after ``runs_before``, from the metadata its steps
    record (``throttled_429`` on the bots' and the submissions' run-level records)."""
    total = 0
    for entry in support.new_runs_logs(home, runs_before)[1]:
        record = support.asset_record(entry)
        if record is not None and record.partition is None:
            total += sum(
                value.value
                for key, value in record.metadata.items()
                if key.endswith("throttled_429") and isinstance(value.value, int)
            )
    return total


def dlt_run(base_url: str, api_key: str, setup: str, work: Path) -> dict[str, Any]:
    """One ``bench.dlt_sync`` run against ``work`` (kept between calls: dlt's state and DuckDB)."""
    work.mkdir(parents=True, exist_ok=True)
    command = [
        *(sys.executable, "-m", "bench.dlt_sync", "--base-url", base_url, "--setup", setup),
        *("--pipelines-dir", str(work / "pipelines"), "--duckdb", str(dlt_db(work, setup))),
        "--no-check",  # checked here, outside the measured process
    ]
    measured = support.measured_run(command, child_env(IOZEN_API_KEY=api_key))
    summary = json.loads(next(line for line in measured.lines if line.startswith("{")))
    return {"wall_s": measured.wall_s, "peak_rss_mb": measured.peak_rss_mb, **summary}


def dlt_db(work: Path, setup: str) -> Path:
    return work / f"dlt_{setup}.duckdb"


def bare_run(base_url: str, api_key: str, retry_429: bool = False) -> dict[str, Any]:
    """The bare loop in a child process (``python -m bench.compare --bare-loop``)."""
    command = [sys.executable, "-m", "bench.compare", "--bare-loop", base_url]
    measured = support.measured_run(
        [*command, *(["--retry-429"] if retry_429 else [])], child_env(IOZEN_API_KEY=api_key)
    )
    summary = json.loads(next(line for line in measured.lines if line.startswith("{")))
    return {"wall_s": measured.wall_s, "peak_rss_mb": measured.peak_rss_mb, **summary}


# Sandboxes, requests, truth ---------------------------------------------------------------


def admin(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url.removesuffix("/api/v1"), timeout=300)


def api_requests(base_url: str) -> int:
    """API requests the sandbox counted so far, route by route (admin reads, this one's or
    another thread's, count in none of them)."""
    with admin(base_url) as http:
        return sum(
            int(http.get("/_sandbox/requests", params={"route": route}).json()["data"]["count"])
            for route in API_ROUTES
        )


def measured(run: Callable[[], dict[str, Any]], base_url: str) -> dict[str, Any]:
    """``run()``'s figures plus the API requests the sandbox counted while it ran."""
    before = api_requests(base_url)
    figures = run()
    figures["requests"] = api_requests(base_url) - before
    return figures


def tool_table(tool: str) -> tuple[str, str]:
    """(database file under the tool's work directory, its submissions table)."""
    if tool == IOZEN:
        return "data/iozen.duckdb", "submissions"
    setup = "best" if tool == DLT_BEST else "incremental"
    return dlt_db(Path(), setup).as_posix(), dlt_sync.TABLE


def correctness(tool: str, work: Path, expected: dlt_sync.Rows) -> dict[str, Any]:
    """The tool's table against the truth (the bare loop stores nothing: no figures)."""
    if tool == BARE:
        return {}
    name, table = tool_table(tool)
    return dlt_sync.diff(dlt_sync.stored(work / name, table), expected)


def run_tool(
    tool: str, base_url: str, api_key: str, work: Path, *, rate_limited: bool = False
) -> dict[str, Any]:
    """One sync by ``tool`` with the requests it made, rounded for the tables."""
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        IOZEN: lambda: iozen_sync(base_url, api_key, work, count_429=rate_limited),
        DLT_BEST: lambda: dlt_run(base_url, api_key, "best", work),
        DLT_INCREMENTAL: lambda: dlt_run(base_url, api_key, "incremental", work),
        BARE: lambda: bare_run(base_url, api_key, retry_429=rate_limited),
    }
    figures = measured(runs[tool], base_url)
    figures["wall_s"] = round(figures["wall_s"], 2)
    figures["peak_rss_mb"] = round(figures["peak_rss_mb"], 1)
    return figures


@contextmanager
def sandbox(shape: Shape, *options: str) -> Iterator[tuple[str, str]]:
    with support.sandbox_process(*shape.options(), *options) as found:
        yield found


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="iozen-compare-") as path:
        yield Path(path)


def say(line: str) -> None:
    print(line, flush=True)


# Scenarios --------------------------------------------------------------------------------


def nothing() -> None:
    pass


def full_sync(
    shape: Shape, tools: Sequence[str], before_each: Callable[[], None] = nothing
) -> dict[str, Any]:
    """Every tool in turn against one read-only sandbox with no rate limit (``before_each``
    runs before each tool's sync)."""
    label = f"full sync, {shape.name} {shape.total:,} ({shape.bots:,} bots x {shape.per_bot:,})"
    say(f"-- {label}")
    results: dict[str, Any] = {}
    with sandbox(shape, "--rate-limit", UNLIMITED) as (base_url, api_key), scratch() as tmp:
        for tool in tools:
            before_each()
            results[tool] = run_tool(tool, base_url, api_key, tmp / tool.replace(" ", "_"))
            say(f"   {tool}: {results[tool]['wall_s']} s, {results[tool]['peak_rss_mb']} MB")
        expected = dlt_sync.truth(base_url)
        for tool in tools:
            work = tmp / tool.replace(" ", "_")
            results[tool].update(dlt_sync.counts(correctness(tool, work, expected)))
    return scenario(f"full_{shape.name}_{shape.total}", label, "full", shape, results)


def scenario(
    key: str, label: str, kind: str, shape: Shape, tools: dict[str, Any]
) -> dict[str, Any]:
    return {
        "key": key,
        "label": label,
        "kind": kind,
        "shape": shape.name,
        "submissions": shape.total,
        "bots": shape.bots,
        "tools": tools,
    }


class RateLimited:
    """The rate-limited scenario: every tool against its own rate-limited sandbox, all at once
    in background threads (each spends most of its run waiting on its budget)."""

    def __init__(self, plan: Plan, tools: Sequence[str]) -> None:
        self.shape, self.limit, self.window = plan.rate_shape, plan.rate_limit, plan.rate_window_s
        self.tools = tools
        self.label = (
            f"rate-limited {self.shape.total:,} ({self.shape.bots} bots; {self.limit} per "
            f"{self.window:g} s, {LATENCY_MS} ms latency)"
        )
        say(f"-- {self.label} (started)")
        # No tool can send again before its first request has left the window.
        self.quiet_until = time.monotonic() + self.window
        self.found: dict[str, Any] | None = None
        self.urls: dict[str, str] = {}
        self.pool = ThreadPoolExecutor(max_workers=len(tools))
        self.futures = {tool: self.pool.submit(self._one, tool) for tool in tools}

    def _one(self, tool: str) -> dict[str, Any]:
        options = (
            *("--rate-limit", str(self.limit), "--window-s", f"{self.window:g}"),
            *("--latency-ms", str(LATENCY_MS)),
        )
        with sandbox(self.shape, *options) as (base_url, api_key), scratch() as tmp:
            self.urls[tool] = base_url
            figures = run_tool(tool, base_url, api_key, tmp, rate_limited=True)
            figures.update(dlt_sync.counts(correctness(tool, tmp, dlt_sync.truth(base_url))))
        accepted = figures["requests"] - figures.get("http_429", 0)
        figures["budget_share"] = round(
            accepted / (figures["wall_s"] / self.window * self.limit), 3
        )
        return figures

    def wait_until_spent(self, timeout_s: float = 60.0) -> None:
        """Until every tool has spent its first window's budget (or finished): from then on they
        mostly wait, and the machine is nearly idle."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not all(map(self._spent, self.tools)):
            time.sleep(0.5)

    def _spent(self, tool: str) -> bool:
        url = self.urls.get(tool)
        done = self.futures[tool].done()
        return done or (url is not None and api_requests(url) >= self.limit)

    def settle(self, next_s: float) -> None:
        """Wait for the scenario to finish unless a measurement of up to ``next_s`` seconds
        started now ends before any of its tools can send again."""
        if self.found is None and time.monotonic() + next_s > self.quiet_until:
            say("   (waiting for the rate-limited tools to finish)")
            self.result()

    def result(self) -> dict[str, Any]:
        if self.found is not None:
            return self.found
        results = {tool: future.result() for tool, future in self.futures.items()}
        self.pool.shutdown()
        say(f"-- {self.label}")
        for tool, figures in results.items():
            say(
                f"   {tool}: {figures['wall_s']} s, {figures['requests']} requests, "
                f"{figures.get('http_429', 0)} x 429, budget share {figures['budget_share']:.0%}"
            )
        found = scenario("rate_limited", self.label, "rate_limited", self.shape, results)
        found.update(rate_limit=self.limit, window_s=self.window, latency_ms=LATENCY_MS)
        self.found = found
        return found


def truth_records(base_url: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Every bot id, and every submission (with ``intake_bot_id``) in id order."""
    bots: list[str] = []
    records: list[dict[str, Any]] = []
    with admin(base_url) as http:
        for bot in http.get("/_sandbox/truth/bots").json()["data"]:
            bots.append(bot["id"])
            params = {"bot_id": bot["id"]}
            subs = http.get("/_sandbox/truth/submissions", params=params).json()["data"]
            records += ({**sub, "intake_bot_id": bot["id"]} for sub in subs)
    return sorted(bots), sorted(records, key=lambda record: record["id"])


def spread(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items picked evenly along ``items`` (the same ones for the same seed)."""
    if n <= 0 or not items:
        return []
    step = len(items) / n
    return [items[int(i * step)] for i in range(min(n, len(items)))]


def change_workspace(base_url: str, total: int) -> dict[str, list[str]]:
    """Add and change ``CHANGED_SHARE`` of the submissions; the ids of each kind of change."""
    bots, records = truth_records(base_url)
    changes = max(4, round(total * CHANGED_SHARE))
    new, completed = changes // 2, changes // 4
    edited = changes - new - completed
    waiting = [r for r in records if r["status"] == "IN_PROGRESS"]
    # An edit changes a text answer; submissions without one are passed over.
    editable = [r for r in records if r["status"] == "COMPLETED" and _text_field(r)]
    kinds: dict[str, list[str]] = {"new": [], "completed": [], "edited": []}
    with admin(base_url) as http:
        # Round the bots, every `stride`-th one, so new submissions land in as many as can be.
        stride = max(1, len(bots) // max(1, new))
        for bot_id, n in sorted(Counter(bots[i * stride % len(bots)] for i in range(new)).items()):
            body = {"bot_id": bot_id, "n": n}
            kinds["new"] += http.post("/_sandbox/generate", json=body).json()["data"]["ids"]
        for record in spread(waiting, completed):
            _update(http, record, {"status": "COMPLETED"})
            kinds["completed"].append(record["id"])
        for record in spread(editable, edited):
            _update(http, record, {"data": {_text_field(record): "edited by the bench"}})
            kinds["edited"].append(record["id"])
    return kinds


def _text_field(record: Mapping[str, Any]) -> str:
    return next((key for key, value in record["data"].items() if isinstance(value, str)), "")


def _update(http: httpx.Client, record: Mapping[str, Any], change: dict[str, Any]) -> None:
    body = {"bot_id": record["intake_bot_id"], "submission_id": record["id"], **change}
    http.post("/_sandbox/update", json=body).raise_for_status()


def incremental(
    shape: Shape, tools: Sequence[str], before_each: Callable[[], None] = nothing
) -> dict[str, Any]:
    """Per tool, a fresh sandbox: first sync, 1 % added or changed, the measured second sync
    (``before_each`` runs before each tool's turn)."""
    label = (
        f"incremental after 1 % added or changed, {shape.total:,} "
        f"({shape.bots:,} bots x {shape.per_bot:,})"
    )
    say(f"-- {label}")
    results: dict[str, Any] = {}
    for tool in tools:
        before_each()
        with sandbox(shape, "--rate-limit", UNLIMITED) as (base_url, api_key), scratch() as tmp:
            first = run_tool(tool, base_url, api_key, tmp)
            kinds = change_workspace(base_url, shape.total)
            figures = run_tool(tool, base_url, api_key, tmp)
            figures["first_sync_wall_s"] = first["wall_s"]
            figures["changes"] = {kind: len(ids) for kind, ids in kinds.items()}
            found = correctness(tool, tmp, dlt_sync.truth(base_url))
            figures.update(dlt_sync.counts(found))
            if found:
                figures["not_seen_by_kind"] = not_seen(found, kinds)
        results[tool] = figures
        unseen = figures.get("not_seen_by_kind", "-")
        say(
            f"   {tool}: {figures['wall_s']} s, {figures['requests']} requests, missing "
            f"{figures.get('missing', '-')}, stale {figures.get('stale', '-')}, changes not "
            f"seen {unseen} of {figures['changes']}"
        )
    return scenario(f"incremental_{shape.total}", label, "incremental", shape, results)


def not_seen(found: Mapping[str, Any], kinds: Mapping[str, list[str]]) -> dict[str, int]:
    """Of each kind of change, how many the tool's table does not show (missing or stale)."""
    wrong = set(found["missing_ids"]) | set(found["stale_ids"])
    counted = {kind: sum(1 for key in ids if key in wrong) for kind, ids in kinds.items()}
    counted["unchanged"] = len(wrong - {key for ids in kinds.values() for key in ids})
    return counted


# Tables, headline, files ------------------------------------------------------------------


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value and base else "—"


def _cell(figures: Mapping[str, Any], key: str, fmt: str = "{}") -> str:
    value = figures.get(key)
    return "—" if value is None else fmt.format(value)


def format_table(figures: Mapping[str, Any]) -> str:
    """The markdown table of a run: one row per scenario and tool, ratios of wall time to dlt
    best and to the bare loop of the same scenario (pure: figures in, text out)."""
    head = (
        "| scenario | tool | wall s | peak MB | × dlt best | × bare | requests | 429s "
        "| budget used | missing | stale | exact |"
    )
    lines = [head, "|" + "---|" * 12]
    for found in figures.get("scenarios", []):
        tools = found["tools"]
        best = tools.get(DLT_BEST, {}).get("wall_s")
        bare = tools.get(BARE, {}).get("wall_s")
        for tool in TOOLS:
            if tool not in tools:
                continue
            row = tools[tool]
            exact = "—" if "exact" not in row else ("yes" if row["exact"] else "**no**")
            cells = [
                found["label"],
                tool,
                _cell(row, "wall_s", "{:.2f}"),
                _cell(row, "peak_rss_mb", "{:.0f}"),
                _ratio(row.get("wall_s"), best),
                _ratio(row.get("wall_s"), bare),
                _cell(row, "requests", "{:,}"),
                _cell(row, "http_429"),
                _cell(row, "budget_share", "{:.0%}"),
                _cell(row, "missing", "{:,}"),
                _cell(row, "stale", "{:,}"),
                exact,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_events_table(figures: Mapping[str, Any]) -> str:
    """iozen-etl's full syncs with and without Dagster's per-bot events (one event per bot
    whose data changed; on SQLite each is its own write), against dlt best (pure)."""
    lines = [
        "| scenario | iozen-etl wall s | per-bot events | their seconds | wall less them "
        "| × dlt best |",
        "|" + "---|" * 6,
    ]
    for found in figures.get("scenarios", []):
        tools = found["tools"]
        row = tools.get(IOZEN, {})
        if found["kind"] != "full" or "partition_events_s" not in row:
            continue
        less = row["wall_s"] - row["partition_events_s"]
        cells = [
            found["label"],
            f"{row['wall_s']:.2f}",
            f"{row['partition_events']:,}",
            f"{row['partition_events_s']:.2f}",
            f"{less:.2f}",
            _ratio(less, tools.get(DLT_BEST, {}).get("wall_s")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline(figures: Mapping[str, Any]) -> dict[str, float]:
    """iozen-etl's wall time over dlt best's, deep shape, per size."""
    ratios = {}
    for found in figures.get("scenarios", []):
        tools = found["tools"]
        if found["kind"] == "full" and found["shape"] == "deep" and DLT_BEST in tools:
            ratio = tools[IOZEN]["wall_s"] / tools[DLT_BEST]["wall_s"]
            ratios[f"deep {found['submissions']:,}"] = round(ratio, 2)
    return ratios


def plot(figures: Mapping[str, Any], path: Path) -> None:
    """Wall time and peak memory against size, full syncs, for iozen-etl, dlt best and the
    bare loop (circles and solid lines: deep; squares and dashed lines: wide)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (wall, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {IOZEN: "tab:blue", DLT_BEST: "tab:orange", BARE: "tab:gray"}
    full = [found for found in figures.get("scenarios", []) if found["kind"] == "full"]
    for tool, colour in colours.items():
        for shape, style in (("deep", "-o"), ("wide", "--s")):
            points = sorted(
                (found["submissions"], found["tools"][tool])
                for found in full
                if found["shape"] == shape and tool in found["tools"]
            )
            if not points:
                continue
            sizes = [size for size, _ in points]
            walls = [figures["wall_s"] for _, figures in points]
            peaks = [figures["peak_rss_mb"] for _, figures in points]
            wall.plot(sizes, walls, style, color=colour, label=f"{tool}, {shape}")
            memory.plot(sizes, peaks, style, color=colour)
    for axes, title in ((wall, "wall time (s)"), (memory, "peak RSS (MB)")):
        axes.set_ylim(bottom=0)
        axes.set_xscale("log")
        axes.set_xlabel("submissions")
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
    wall.legend(fontsize=8)
    fig.suptitle("Full sync, API to queryable DuckDB (circles: 20 bots, squares: 1,000 bots)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def settings_lines() -> list[str]:
    return [f"- `{key}={value}`" for key, value in dlt_sync.SPEED_SETTINGS.items()] + [
        f"- `{key}={value}`" for key, value in dlt_sync.OTHER_SETTINGS.items()
    ]


def write_outputs(figures: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    table = format_table(figures) + "\n\n" + format_events_table(figures)
    (RESULTS / "compare.json").write_text(json.dumps(figures, indent=2, default=str))
    (RESULTS / "compare.md").write_text(table + "\n")
    plot(figures, DOCS / "comparison.png")
    (DOCS / "comparison.md").write_text(comparison_doc(figures, table))


def comparison_doc(figures: Mapping[str, Any], table: str) -> str:
    """docs/comparison.md: the table of the latest run and how to read it."""
    ratios = ", ".join(f"{name}: **{ratio:.2f}×**" for name, ratio in figures["headline"].items())
    mode = "`python -m bench compare --quick`" if figures["quick"] else "`python -m bench compare`"
    machine = figures["machine"]
    return "\n".join(
        [
            "# iozen-etl, dlt and a bare fetch loop, side by side",
            "",
            f"Latest run: {figures['started']}, {mode} ({figures.get('elapsed_s', '?')} s), "
            f"Python {machine['python']} on {machine['platform']}, dlt "
            f"{figures.get('dlt_version', '?')}. Raw figures: `bench/results/compare.json` "
            "(not committed). This file and `comparison.png` are written by every run.",
            "",
            "**Headline**: iozen-etl's wall time over dlt best's, full sync of 20 bots: "
            f"{ratios} (below 1: iozen-etl is faster).",
            "",
            *[f"*{note}*\n" for note in figures.get("notes", [])],
            "![wall time and peak memory against size](comparison.png)",
            "",
            table,
            "",
            "The second table splits iozen-etl's full syncs: Dagster writes one event per bot",
            "whose data changed (what makes the Dagster UI show each bot's partition), and on its",
            "default SQLite storage each event is its own write; *wall less them* is what the",
            "sync costs without that bookkeeping (a first sync of 1,000 bots writes 1,000).",
            "",
            DOC_TEXT,
            *settings_lines(),
            "",
            DOC_TAIL,
        ]
    )


DOC_TEXT = """## How to run

- `python -m bench compare --quick`: full syncs at 100,000 (deep and wide), a small
  rate-limited scenario (12,000 submissions, 4 bots) and a small incremental one (10,000, 10
  bots); under three minutes on this project's 2-core machine.
- `python -m bench compare`: full syncs at 100,000 and 1,000,000 (wide: 1,000 bots × 100 or
  1,000; deep: 20 bots × 5,000 or 50,000), with all four tools; the rate-limited scenario at
  50,000 (100 bots × 500, six budget windows, so about seven minutes); the incremental one at
  100,000 (1,000 bots × 100). `--sizes 100000` limits the full syncs to that size.
- `make bench` installs the bench extra (`pip install -e '.[dev,bench]'`: dlt, matplotlib)
  and runs every area, this one in its full form. Without dlt the area says so and is skipped.

## The tools

Each runs in its own child process against the sandbox (a process of its own too), measured
from outside: wall time, and peak RSS as `RUSAGE_CHILDREN` reports it (the largest single
process of the tool's tree: dlt's normaliser processes and iozen-etl's warehouse-load process
are each measured on their own, not added up).

- **iozen-etl**: `iozen-etl sync` end to end, from the API to the published, queryable DuckDB
  file (Dagster run on a new SQLite instance, Parquet lake, warehouse merge, snapshot).
- **dlt best**: dlt's `rest_api` source as dlt's docs describe it for a parent/child
  cursor-paged API: `intake_bots`, then `intake-bots/{resources.intake_bots.id}/submissions`
  for each bot (the bot id kept as `_intake_bots_id`), a JSON cursor paginator on
  `data.pagination.next_cursor` (query parameter `cursor`, stopping when `has_more` is false),
  `data_selector`, bearer auth, primary key `id`, write disposition `merge`, every page read
  again each run, Parquet load files, into its own DuckDB file (`bench/dlt_sync.py`).
- **dlt incremental**: the same, plus dlt's documented incremental cursor on `updated_at` for
  submissions. The API has no "updated since" parameter, so the cursor cannot be sent: dlt
  still reads every page, and loads only the rows at or after the last run's highest
  `updated_at`.
- **bare loop**: `bench.sync.bare_fetch`, an httpx loop with 8 threads over the bot listing,
  each bot's details and every submissions page, which parses each answer and stores nothing:
  the floor for any sync. Under a rate limit it repeats a refused request after the answer's
  `retry_after`.

## The scenarios

Every sandbox has the same seed, so every tool reads the same data.

- **full sync**: a new workspace read whole. *deep*: 20 bots; *wide*: 1,000 bots. One sandbox
  per workspace, read-only, no rate limit; the tools one after another.
- **rate-limited**: each tool against its own sandbox with ioZen's pro-plan budget (100
  requests in a 60 s sliding window) and 150 ms added to every answer; the four run at once,
  since each spends its run waiting for its budget. *budget used* = requests answered (not
  429) / (wall time / window × limit): the share of the allowance the tool used over its run,
  start-up and load included. The window is not scaled down to save time (as the client's
  rate-budget bench does, 100 per 12 s): `iozen-etl sync` paces itself to ioZen's 60 s window
  (docs/decisions.md #9) and has no setting for another, so it would spend a fifth of a scaled
  budget, which says nothing about the real API. *429s*: refused requests, counted by dlt's
  HTTP adapter and the bare loop, and read from iozen-etl's run metadata.
- **incremental**: per tool a fresh sandbox, a first sync, then 1 % of the submissions added
  or changed through the sandbox's admin routes: half new submissions, a quarter IN_PROGRESS
  → COMPLETED (a status change keeps the listing order), a quarter COMPLETED submissions
  with a text answer edited (both changes move `updated_at`); then the second sync, which is
  the row in the table (*requests*: that sync's, counted by the sandbox).

## Reading the table

- **missing** / **stale**: submissions of the sandbox's truth that the tool's `submissions`
  table lacks, or holds with another `status` or `updated_at`; **exact**: neither, and no
  rows the truth lacks. For the incremental scenario the JSON also says how many of each
  kind of change a tool did not show (`not_seen_by_kind`). iozen-etl reads stored IN_PROGRESS
  rows again within `IOZEN_IN_PROGRESS_REFRESH_LIMIT` requests (100) a run, and does not see
  an edit of a COMPLETED submission that moves neither its bot's `submission_count` nor its
  `updated_at` until a full refresh (README, Known limits): in a large workspace some of the
  changed rows stay stale after one incremental sync, by design.
- **× dlt best**, **× bare**: a tool's wall time over dlt best's, and over the bare loop's, in
  the same scenario; below 1 is faster. The machine is shared: wall times vary by about ±20 %
  between runs.

## dlt settings (both setups)

The child resource is `parallelized` (per-bot listings in dlt's thread pool) and the load
files are Parquet (`loader_file_format="parquet"`). Set through the environment by
`bench/dlt_sync.py`:
"""

DOC_TAIL = """The first four follow dlt's performance guide; the retry settings are what a
rate-limited run needs to finish at all (dlt reads no retry time from a 429's body, only a
`Retry-After` header, and gives up after 5 attempts by default); telemetry is off so the
benchmark sends nothing out. `DATA_WRITER__BUFFER_MAX_ITEMS` (20,000 instead of 5,000) was
tried and left at its default: no difference beyond the machine's noise, more memory.
"""


# The run ----------------------------------------------------------------------------------


def dlt_version() -> str:
    from importlib.metadata import version

    return version("dlt")


def full_syncs(plan: Plan, sizes: Sequence[int]) -> list[dict[str, Any]]:
    return [full_sync(shape(total), plan.full_tools) for total in sizes for shape in (deep, wide)]


def in_turn(plan: Plan, sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Every scenario after the other."""
    found = full_syncs(plan, sizes)
    found.append(RateLimited(plan, TOOLS).result())
    return [*found, incremental(plan.incremental_shape, TOOLS)]


def overlapped(plan: Plan, sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Quick mode: once the rate-limited tools have spent their first window they sleep for
    most of a minute. The first deep full sync, then the incremental scenario, run meanwhile,
    one measurement at a time as long as it ends before the tools can wake up (the margins
    are the longest such a measurement takes here, with room); the rest waits for them."""
    limited = RateLimited(plan, TOOLS)
    limited.wait_until_spent()
    first_deep = full_sync(deep(sizes[0]), plan.full_tools, lambda: limited.settle(20.0))
    changed = incremental(plan.incremental_shape, TOOLS, lambda: limited.settle(15.0))
    rate_limited = limited.result()
    rest = [full_sync(wide(sizes[0]), plan.full_tools), *full_syncs(plan, sizes[1:])]
    return [first_deep, *rest, rate_limited, changed]


def run(sizes: Sequence[int] | None = None, quick: bool = False) -> dict[str, Any]:
    if importlib.util.find_spec("dlt") is None or importlib.util.find_spec("matplotlib") is None:
        reason = "dlt or matplotlib is not installed: pip install -e '.[dev,bench]'"
        say(f"compare skipped: {reason}")
        return {"skipped": reason}
    plan = QUICK if quick else FULL
    started = time.perf_counter()
    figures: dict[str, Any] = {
        "quick": quick,
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "dlt_version": dlt_version(),
        "notes": plan.notes,
        "scenarios": [],
    }
    run_plan = overlapped if plan.overlap else in_turn
    figures["scenarios"] = run_plan(plan, list(sizes or plan.sizes))
    figures["elapsed_s"] = round(time.perf_counter() - started, 1)
    figures["headline"] = headline(figures)
    write_outputs(figures)
    say("\n" + format_table(figures))
    say("\n" + format_events_table(figures))
    say(f"\nheadline, iozen-etl / dlt best wall time: {json.dumps(figures['headline'])}")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the short form (under 3 minutes)")
    parser.add_argument("--sizes", default="", help="comma-separated totals for the full syncs")
    parser.add_argument("--bare-loop", metavar="BASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--retry-429", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_loop:
        # The child of ``bare_run``: one bare loop, its figures as one JSON line.
        api_key = os.environ["IOZEN_API_KEY"]
        figures = bare_fetch(args.bare_loop, api_key, retry_429=args.retry_429)
        print(json.dumps(figures), flush=True)
        return 0
    run([int(size) for size in args.sizes.split(",") if size] or None, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
