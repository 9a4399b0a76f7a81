"""Extraction benchmark: a full sync against a bare fetch loop, peak memory, incremental cost.

Every sandbox runs in its own process (``iozen-etl sandbox``, rate limit effectively off)
and every sync in another (``python -m bench.engine_run`` under a small parent that reports its
child's peak RSS from ``RUSAGE_CHILDREN``), so neither the sandbox nor this process counts in the
memory figure. The baseline is a bare httpx loop over the same requests (bot listing, bot details,
every submissions page), with the same concurrency, measured in the same run.

Run: ``python -m bench.sync [--sizes 100000,1000000]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx

from bench import support

BOTS = 1000
CONCURRENCY = 8
UNLIMITED = "1000000000"


def sandbox_process(bots: int, per_bot: int) -> AbstractContextManager[tuple[str, str]]:
    """A sandbox of ``bots`` bots with no rate limit, served by its own process."""
    return support.sandbox_process(
        *("--bots", str(bots), "--submissions-per-bot", str(per_bot)),
        *("--rate-limit", UNLIMITED),
    )


def bare_fetch(
    base_url: str, api_key: str, concurrency: int = CONCURRENCY, *, retry_429: bool = False
) -> dict[str, Any]:
    """The least any sync must do: every bot page, every detail, every submissions page. With
    ``retry_429`` a refused request is repeated once the answer's ``retry_after`` has passed:
    the least a client must do to get through a rate limit at all."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    answers: Counter[int] = Counter()
    with httpx.Client(base_url=base_url, headers=headers, timeout=60, limits=limits) as http:

        def get(path: str, cursor: str | None = None) -> Any:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            while True:
                response = http.get(path, params=params)
                answers[response.status_code] += 1
                if response.status_code != 429 or not retry_429:
                    return response.json()["data"]
                details = response.json()["error"].get("details") or {}
                time.sleep(max(1.0, float(details.get("retry_after", 1))))

        def pages(path: str, key: str) -> Iterator[list[dict[str, Any]]]:
            cursor: str | None = None
            while True:
                data = get(path, cursor)
                yield data[key]
                cursor = data["pagination"]["next_cursor"]
                if not data["pagination"]["has_more"] or not cursor:
                    return

        bot_ids = [bot["id"] for page in pages("/intake-bots", "intake_bots") for bot in page]

        def one_bot(bot_id: str) -> None:
            get(f"/intake-bots/{bot_id}")
            for _ in pages(f"/intake-bots/{bot_id}/submissions", "submissions"):
                pass

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(one_bot, bot_ids))
    return {
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu_started,
        "requests": sum(answers.values()),
        "http_429": answers[429],
    }


def timed_sync(
    base_url: str, api_key: str, data_dir: Path, concurrency: int = CONCURRENCY
) -> dict[str, Any]:
    """One ``bench.engine_run`` in a child process: wall time, peak RSS, its own summary."""
    measured = support.measured_run(
        [
            *(sys.executable, "-m", "bench.engine_run"),
            *("--base-url", base_url, "--data-dir", str(data_dir)),
            *("--concurrency", str(concurrency)),
        ],
        support.child_env(IOZEN_API_KEY=api_key),
    )
    summary = json.loads(next(line for line in measured.lines if line.startswith("{")))
    engine_s = summary["bots"]["elapsed_s"] + summary["submissions"]["elapsed_s"]
    return {
        "wall_s": measured.wall_s,
        "engine_s": engine_s,
        "peak_rss_mb": measured.peak_rss_mb,
        "cpu_s": measured.cpu_s,
        "requests": summary["requests_total"],
        "summary": summary,
    }


def _complete_everything(base_url: str, api_key: str) -> int:
    """Mark every IN_PROGRESS submission COMPLETED through the sandbox's admin routes."""
    root = base_url.removesuffix("/api/v1")
    with httpx.Client(base_url=root, timeout=60) as http:
        subs = http.get("/_sandbox/truth/submissions").json()["data"]
        waiting = [s for s in subs if s["status"] == "IN_PROGRESS"]
        for sub in waiting:
            body = {"bot_id": sub["intake_bot_id"], "submission_id": sub["id"]}
            http.post("/_sandbox/update", json={**body, "status": "COMPLETED"}).raise_for_status()
    del api_key
    return len(waiting)


def full_sync(total: int, bots: int = BOTS) -> dict[str, Any]:
    per_bot = max(1, total // bots)
    with (
        sandbox_process(bots, per_bot) as (base_url, api_key),
        tempfile.TemporaryDirectory(prefix="iozen-bench-") as scratch,
    ):
        baseline = bare_fetch(base_url, api_key)
        sync = timed_sync(base_url, api_key, Path(scratch) / "data")
        rows = sync["summary"]["submissions"]["rows_new"]
        incremental = timed_sync(base_url, api_key, Path(scratch) / "data")
    return {
        "submissions": rows,
        "bots": bots,
        "baseline_s": round(baseline["seconds"], 2),
        "baseline_requests": baseline["requests"],
        "sync_engine_s": round(sync["engine_s"], 2),
        "sync_wall_s": round(sync["wall_s"], 2),
        "ratio_vs_baseline": round(sync["engine_s"] / baseline["seconds"], 2),
        # CPU is steadier than wall time on a shared machine: the sync process (start-up and
        # imports included) against the bare loop's own CPU; the sandbox counts in neither.
        "baseline_cpu_s": round(baseline["cpu_s"], 2),
        "sync_cpu_s": round(sync["cpu_s"], 2),
        "cpu_ratio_vs_baseline": round(sync["cpu_s"] / baseline["cpu_s"], 2),
        "sync_requests": sync["requests"],
        "peak_rss_mb": round(sync["peak_rss_mb"], 1),
        "rows_per_s": round(rows / sync["engine_s"]),
        # IN_PROGRESS submissions (15 % of the seed) are refreshed, bounded per run.
        "incremental_requests_with_in_progress": incremental["requests"],
    }


def unchanged_workspace_requests(bots: int = BOTS) -> dict[str, Any]:
    """Requests of an incremental sync when nothing changed and nothing is IN_PROGRESS."""
    with (
        sandbox_process(bots, 3) as (base_url, api_key),
        tempfile.TemporaryDirectory(prefix="iozen-bench-") as scratch,
    ):
        completed = _complete_everything(base_url, api_key)
        first = timed_sync(base_url, api_key, Path(scratch) / "data")
        second = timed_sync(base_url, api_key, Path(scratch) / "data")
    return {
        "bots": bots,
        "completed_before_sync": completed,
        "first_sync_requests": first["requests"],
        "unchanged_sync_requests": second["requests"],
        "unchanged_sync_engine_s": round(second["engine_s"], 3),
    }


# The two shapes of a workspace: many small bots (per-bot costs dominate) and a few deep ones.
SHAPES = {"wide": BOTS, "deep": 20}


def run(sizes: Sequence[int] = (100_000, 1_000_000)) -> dict[str, Any]:
    results: dict[str, Any] = {"full_sync": {}, "concurrency": CONCURRENCY}
    for total in sizes:
        for shape, bots in SHAPES.items():
            key = f"{total}-{shape}"
            results["full_sync"][key] = figures = full_sync(total, bots)
            print(f"full sync {total:,} {shape} ({bots} bots): {json.dumps(figures)}", flush=True)
    results["unchanged"] = unchanged = unchanged_workspace_requests()
    print(f"unchanged {BOTS}-bot workspace: {json.dumps(unchanged)}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated totals")
    args = parser.parse_args(argv)
    run([int(size) for size in args.sizes.split(",") if size])
    return 0


if __name__ == "__main__":
    sys.exit(main())
