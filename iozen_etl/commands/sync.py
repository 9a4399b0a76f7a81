"""``iozen-etl sync``: the scheduled sync's job, run in-process, with a summary."""

from __future__ import annotations

import argparse
import logging
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
    parser.add_argument(
        "--workspace",
        action="append",
        default=[],
        metavar="NAME",
        help="with IOZEN_WORKSPACES_FILE: sync only this workspace (repeatable); default: every "
        "workspace of the file, one after another",
    )
    parser.epilog = (
        "Exits 0 only when the sync completed; otherwise prints one line saying why. A sync "
        "stopped by a fault or the rate budget keeps every committed page: run it again to resume. "
        "With several workspaces, one that fails (a wrong key, say) does not stop the others; "
        "the exit status is 1 if any failed."
    )


def run(args: argparse.Namespace) -> int:
    from iozen_etl.workspaces import WorkspacesFileError, choose_workspace, load_workspaces

    try:
        workspaces = load_workspaces()
        for name in args.workspace:
            choose_workspace(name, workspaces)  # an unknown name is refused, naming the known
    except WorkspacesFileError as error:
        print(f"iozen-etl sync: {error}", file=sys.stderr)
        return 2
    chosen = [w for w in workspaces if not args.workspace or w.name in args.workspace]
    if args.bot and len(chosen) > 1:
        print("iozen-etl sync: --bot names one workspace's bots: add --workspace", file=sys.stderr)
        return 2
    if len(chosen) == 1 and not chosen[0].from_file and not chosen[0].api_key():
        print(f"iozen-etl sync: {API_KEY_ENV} is not set (an ioZen API key)", file=sys.stderr)
        return 2
    # Dagster is imported here, not at the top: other sub-commands should start fast.
    from iozen_etl.definitions import defs
    from iozen_etl.pipeline.launch import format_summary, open_instance, run_sync
    from iozen_etl.pipeline.scope import Scope
    from iozen_etl.sync.lock import sync_lock

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    # The sync's progress lines (a few per minute), printed like ours.
    progress = logging.getLogger("iozen_etl.progress")
    progress.setLevel(logging.INFO)
    progress.addHandler(logging.StreamHandler(sys.stderr))
    progress.propagate = False

    failed: list[str] = []
    top = DataPaths.from_env()
    # Two processes creating a new Dagster instance's storage at once fail on it: the instance
    # is opened under the data directory's lock. Each workspace's sync then holds that
    # workspace's lock (the environment's workspace: the data directory's), so a second sync of
    # the same workspace waits for the first and finds little left to do, while the commands of
    # different workspaces run side by side.
    with sync_lock(top.sync_lock, waiting=say):
        instance = open_instance()
    with instance:
        for workspace in chosen:
            scope = Scope(workspace)
            if workspace.from_file:
                say(f"workspace {workspace.name}:")
                if not workspace.api_key():
                    # Its runs would fail on the unset variable; the others go on.
                    reason = f"{workspace.api_key_env} is not set (its ioZen API key)"
                    print(f"iozen-etl sync: workspace {workspace.name}: {reason}", file=sys.stderr)
                    failed.append(workspace.name)
                    continue
            with sync_lock(scope.paths(top).sync_lock, waiting=say):
                outcome = run_sync(
                    defs,
                    instance,
                    bots=args.bot,
                    full_refresh=args.full_refresh,
                    say=say,
                    scope=scope,
                )
            print(format_summary(outcome.metadata))
            if not outcome.success:
                where = f"workspace {workspace.name}: " if workspace.from_file else ""
                print(f"iozen-etl sync: {where}failed: {outcome.reason}", file=sys.stderr)
                failed.append(workspace.name)
    if failed and len(chosen) > 1:
        print(
            f"iozen-etl sync: {len(failed)} of {len(chosen)} workspaces failed: "
            f"{', '.join(failed)}",
            file=sys.stderr,
        )
    return 1 if failed else 0
