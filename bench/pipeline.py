"""The product end to end: ``iozen-etl sync`` (Dagster in-process, lake, DuckDB load and publish)
against a bare httpx fetch loop over the same pages, measured in the same run.

This is the figure to compare with other tools' "API to queryable DuckDB" times: it includes
Dagster's run overhead, every Parquet write, the warehouse merge and the published snapshot.
The sandbox runs in its own process with its rate limit effectively off, and the sync in
another, whose peak RSS is measured alone.

Run: ``python -m bench pipeline`` (or ``python -m bench.pipeline --sizes 100000``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from bench import support
from bench.sync import BOTS, bare_fetch, sandbox_process


def timed_cli_sync(
    base_url: str, api_key: str, data_dir: Path, dagster_home: Path
) -> dict[str, Any]:
    """One ``iozen-etl sync`` in a child process: wall time, peak RSS and CPU seconds."""
    env = support.child_env(
        IOZEN_API_KEY=api_key,
        IOZEN_BASE_URL=base_url,
        IOZEN_DATA_DIR=str(data_dir),
        DAGSTER_HOME=str(dagster_home),
    )
    measured = support.measured_run([sys.executable, "-m", "iozen_etl", "sync"], env)
    return {"wall_s": measured.wall_s, "peak_rss_mb": measured.peak_rss_mb, "cpu_s": measured.cpu_s}


def warehouse_rows(data_dir: Path) -> int:
    con = duckdb.connect(str(data_dir / "iozen.duckdb"), read_only=True)
    try:
        row = con.execute("select count(*) from submissions").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def end_to_end(total: int, bots: int = BOTS) -> dict[str, Any]:
    per_bot = max(1, total // bots)
    with (
        sandbox_process(bots, per_bot) as (base_url, api_key),
        tempfile.TemporaryDirectory(prefix="iozen-bench-") as scratch,
    ):
        data_dir = Path(scratch) / "data"
        dagster_home = support.new_dagster_home(Path(scratch))
        baseline = bare_fetch(base_url, api_key)
        sync = timed_cli_sync(base_url, api_key, data_dir, dagster_home)
        rows = warehouse_rows(data_dir)
        again = timed_cli_sync(base_url, api_key, data_dir, dagster_home)
    return {
        "submissions_in_warehouse": rows,
        "bots": bots,
        "baseline_s": round(baseline["seconds"], 2),
        "sync_wall_s": round(sync["wall_s"], 2),
        "ratio_vs_baseline": round(sync["wall_s"] / baseline["seconds"], 2),
        "peak_rss_mb": round(sync["peak_rss_mb"], 1),
        "second_sync_wall_s": round(again["wall_s"], 2),
    }


def run(sizes: Sequence[int] = (100_000, 1_000_000)) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for total in sizes:
        results[str(total)] = figures = end_to_end(total)
        print(f"iozen-etl sync, {total:,} submissions: {json.dumps(figures)}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated totals")
    args = parser.parse_args(argv)
    run([int(size) for size in args.sizes.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
