"""The extraction engine alone, once, for the benchmarks: ``python -m bench.engine_run``.

``sync_bots`` then ``sync_submissions`` into a lake and state file, without Dagster or the
warehouse, so ``bench.sync`` and ``bench.profile`` time the engine and nothing else. The product's
way in is ``iozen-etl sync``; this harness only measures.

Reads the API key from ``IOZEN_API_KEY`` only (never from an argument, so it stays out of process
listings). Prints one JSON line of counts. Exit status: 0 done, 3 stopped at the rate budget's wait
ceiling (partial, the next run resumes), 1 some bots failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iozen_etl.api import IozenClient
from iozen_etl.settings import (
    API_KEY_ENV,
    DEFAULT_CONCURRENCY,
    DEFAULT_IN_PROGRESS_REFRESH_LIMIT,
    DataPaths,
    base_url_from_env,
)
from iozen_etl.sync.bots import sync_bots
from iozen_etl.sync.lake import Lake
from iozen_etl.sync.reports import BotsReport, SubmissionsReport
from iozen_etl.sync.state import StateStore
from iozen_etl.sync.submissions import sync_submissions

EXIT_PARTIAL = 3


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_run", description=__doc__)
    parser.add_argument("--base-url", default=None, help="default: $IOZEN_BASE_URL")
    parser.add_argument("--data-dir", default=None, help="default: $IOZEN_DATA_DIR or ./data")
    parser.add_argument("--bot", action="append", default=None, help="only these bots")
    parser.add_argument("--full-refresh", action="store_true", help="rescan the chosen bots")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument(
        "--in-progress-refresh-limit", type=int, default=DEFAULT_IN_PROGRESS_REFRESH_LIMIT
    )
    return parser.parse_args(argv)


def summarise(bots: BotsReport, subs: SubmissionsReport, requests_total: int) -> dict[str, Any]:
    """The figures the benchmarks read, from the reports' own fields."""
    return {
        "bots": {
            "bots_seen": len(bots.bots),
            "details_fetched": bots.details_fetched,
            "detail_errors": len(bots.detail_errors),
            "requests": bots.requests,
            "elapsed_s": round(bots.elapsed_s, 3),
        },
        "submissions": {
            "bots_failed": sum(1 for bot in subs.bots if bot.action == "failed"),
            "pages": sum(bot.pages for bot in subs.bots),
            "rows_new": sum(bot.rows_new for bot in subs.bots),
            "requests": subs.requests,
            "elapsed_s": round(subs.elapsed_s, 3),
        },
        "requests_total": requests_total,
        "failed": [f"{bot.intake_bot_id}: {bot.error}" for bot in subs.bots if bot.error],
        "missing": [bot.intake_bot_id for bot in subs.bots if bot.action == "missing"],
    }


def run_engine(args: argparse.Namespace, api_key: str) -> tuple[BotsReport, SubmissionsReport, int]:
    """Both engine steps over the data directory; their reports and the requests they made."""
    paths = DataPaths(Path(args.data_dir).resolve()) if args.data_dir else DataPaths.from_env()
    lake = Lake.open(paths.lake)
    with (
        IozenClient(api_key, args.base_url or base_url_from_env()) as client,
        StateStore(paths.state_db) as state,
    ):
        bots = sync_bots(client, lake, state, concurrency=args.concurrency)
        full_refresh: frozenset[str] = frozenset()
        if args.full_refresh:
            full_refresh = frozenset(args.bot or (bot.id for bot in bots.bots))
        subs = sync_submissions(
            client,
            lake,
            state,
            bots.bots,
            only_bots=args.bot,
            full_refresh=full_refresh,
            concurrency=args.concurrency,
            in_progress_refresh_limit=args.in_progress_refresh_limit,
        )
        return bots, subs, int(client.stats.snapshot()["requests"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key.strip():
        print(f"{API_KEY_ENV} is not set", file=sys.stderr)
        return 2
    bots, subs, requests_total = run_engine(args, api_key)
    summary = summarise(bots, subs, requests_total)
    print(json.dumps(summary, sort_keys=True), flush=True)
    if bots.stopped_by_wait_ceiling or subs.stopped_by_wait_ceiling:
        return EXIT_PARTIAL
    return 1 if summary["failed"] or bots.detail_errors else 0


if __name__ == "__main__":
    sys.exit(main())
