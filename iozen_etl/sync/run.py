"""Run the extraction engine once, without Dagster: ``python -m iozen_etl.sync.run``.

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
from iozen_etl.sync.state import StateStore
from iozen_etl.sync.submissions import sync_submissions

EXIT_PARTIAL = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iozen_etl.sync.run", description=__doc__)
    parser.add_argument("--base-url", default=None, help="default: $IOZEN_BASE_URL")
    parser.add_argument("--data-dir", default=None, help="default: $IOZEN_DATA_DIR or ./data")
    parser.add_argument("--bot", action="append", default=None, help="only these bots")
    parser.add_argument("--full-refresh", action="store_true", help="rescan the chosen bots")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument(
        "--in-progress-refresh-limit", type=int, default=DEFAULT_IN_PROGRESS_REFRESH_LIMIT
    )
    args = parser.parse_args(argv)
    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key.strip():
        print(f"{API_KEY_ENV} is not set", file=sys.stderr)
        return 2
    paths = DataPaths(Path(args.data_dir).resolve()) if args.data_dir else DataPaths.from_env()
    lake = Lake(paths.parquet)
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
        summary = {
            "bots": bots.metadata(),
            "submissions": subs.metadata(),
            "requests_total": client.stats.snapshot()["requests"],
            "failed": [f"{bot.intake_bot_id}: {bot.error}" for bot in subs.bots if bot.error],
            "missing": [bot.intake_bot_id for bot in subs.bots if bot.action == "missing"],
        }
    print(json.dumps(summary, sort_keys=True), flush=True)
    if bots.stopped_by_wait_ceiling or subs.stopped_by_wait_ceiling:
        return EXIT_PARTIAL
    return 1 if summary["failed"] or bots.detail_errors else 0


if __name__ == "__main__":
    sys.exit(main())
