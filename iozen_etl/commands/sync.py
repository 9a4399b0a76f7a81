"""``iozen-etl sync``: the scheduled sync's job, run in-process, with a summary."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from iozen_etl.settings import API_KEY_ENV, DataPaths


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bot",
        action="append",
        default=[],
        metavar="ID",
        help="sync only this bot (repeatable); default: every bot",
    )
    parser.add_argument(
        "--full-refresh",
        action="store_true",
        help="rescan the chosen bots from their first page (resume points never move backwards)",
    )
    parser.epilog = (
        "Exits 0 only when the sync completed; otherwise prints one line saying why. A sync "
        "stopped by a fault or the rate budget keeps every committed page: run it again to resume."
    )


def run(args: argparse.Namespace) -> int:
    if not os.environ.get(API_KEY_ENV):
        print(f"iozen-etl sync: {API_KEY_ENV} is not set (an ioZen API key)", file=sys.stderr)
        return 2
    # Dagster is imported here, not at the top: other sub-commands should start fast.
    from iozen_etl.definitions import defs
    from iozen_etl.pipeline.launch import format_summary, open_instance, run_sync
    from iozen_etl.sync.lock import sync_lock

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    # The sync's progress lines (a few per minute), printed like ours.
    progress = logging.getLogger("iozen_etl.progress")
    progress.setLevel(logging.INFO)
    progress.addHandler(logging.StreamHandler(sys.stderr))
    progress.propagate = False

    # A second sync of the same data directory waits for the first, then runs (it finds little
    # left to do). Taken before the instance is opened: two processes creating a new Dagster
    # instance's storage at once fail on it.
    with (
        sync_lock(DataPaths.from_env().sync_lock, waiting=say),
        open_instance() as instance,
    ):
        outcome = run_sync(defs, instance, bots=args.bot, full_refresh=args.full_refresh, say=say)
    print(format_summary(outcome.metadata))
    if not outcome.success:
        print(f"iozen-etl sync: failed: {outcome.reason}", file=sys.stderr)
        return 1
    return 0
