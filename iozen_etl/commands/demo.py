"""``iozen-etl demo``: the whole product in one command, against a sandbox on a free loopback port.

It serves a seeded sandbox, syncs it (the same job the schedule runs), replays the bundled
example CSV into the "Customer Onboarding" bot, syncs again so the new rows arrive, then prints
the warehouse's table counts and an example analyst query.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from iozen_etl.settings import API_KEY_ENV, BASE_URL_ENV, DATA_DIR_ENV, DataPaths

if TYPE_CHECKING:
    from dagster import DagsterInstance

DEMO_BOT_NAME = "Customer Onboarding"
EXAMPLE_QUERY = """\
select b.name as bot, count(*) as completed, max(s.created_at) as last_submission
from v_completed_submissions s join intake_bots b on b.id = s.intake_bot_id
group by b.name order by completed desc limit 5"""
TABLES = [
    "intake_bots",
    "intake_bot_fields",
    "submissions",
    "submission_answers",
    "webhooks",
    "sync_state",
    "replay_ledger",
]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data/demo"),
        help="where the demo's lake and warehouse go (emptied first; default: data/demo)",
    )
    parser.add_argument("--bots", type=int, default=12, help="bots the sandbox seeds (default 12)")
    parser.add_argument(
        "--submissions-per-bot", type=int, default=200, help="mean submissions per bot"
    )
    parser.add_argument("--seed", type=int, default=7, help="the sandbox's random seed")


def run(args: argparse.Namespace) -> int:
    # Dagster and the sandbox are imported here, not at the top: other sub-commands start fast.
    import dagster as dg

    from iozen_etl.sandbox import Sandbox, SandboxConfig, serve

    data_dir = args.data_dir.resolve()
    shutil.rmtree(data_dir, ignore_errors=True)
    sandbox = Sandbox(
        SandboxConfig(
            seed=args.seed,
            bots=args.bots,
            submissions_per_bot=args.submissions_per_bot,
            real_time=True,
        )
    )
    server = serve(sandbox)
    # The sandbox's own key, set for this process only: the Dagster resource reads it via EnvVar.
    os.environ.update(
        {API_KEY_ENV: sandbox.api_key, BASE_URL_ENV: server.base_url, DATA_DIR_ENV: str(data_dir)}
    )
    paths = DataPaths(data_dir)
    step = _Steps()
    try:
        step(f"sandbox serving {server.base_url} ({args.bots} bots)")
        # A throwaway instance: the sandbox's bots must not become partitions of a real one.
        with dg.DagsterInstance.ephemeral() as instance:
            step("first sync: every bot, from the start")
            if not _sync(instance, step):
                return 1
            _replay_example(sandbox.api_key, server.base_url, paths, step)
            step("second sync: only what changed")
            if not _sync(instance, step):
                return 1
        _show_warehouse(paths, step)
        step(f'done: query it yourself with IOZEN_DATA_DIR={data_dir} iozen-etl sql "..."')
        return 0
    finally:
        server.close()


def _sync(instance: DagsterInstance, step: _Steps) -> bool:
    """One ``iozen-etl sync``, its summary printed; False (said on stderr) when it failed."""
    from iozen_etl.definitions import defs
    from iozen_etl.pipeline.launch import format_summary, run_sync

    outcome = run_sync(defs, instance, say=step.detail)
    if not outcome.success:
        step.fail(f"sync failed: {outcome.reason}")
        return False
    print(format_summary(outcome.metadata))
    return True


def _replay_example(api_key: str, base_url: str, paths: DataPaths, step: _Steps) -> None:
    """The bundled example CSV, copied under the data directory, replayed into the demo bot."""
    from iozen_etl.api import IozenClient
    from iozen_etl.replay import replay_csv

    with IozenClient(api_key, base_url) as client:
        bot_id = next(
            bot.id
            for page in client.iter_intake_bot_pages()
            for bot in page.items
            if bot.name == DEMO_BOT_NAME
        )
        example = paths.root / "examples" / "submissions.csv"
        example.parent.mkdir(parents=True, exist_ok=True)
        source = resources.files("iozen_etl").joinpath("examples/submissions.csv")
        example.write_bytes(source.read_bytes())
        step(f"replaying {example.name} into {DEMO_BOT_NAME} ({bot_id})")
        report = replay_csv(client, paths, example, bot_id=bot_id)
    step.detail(report.summary())
    if report.rejects_path:
        step.detail(f"rejected rows and their reasons: {report.rejects_path}")


def _show_warehouse(paths: DataPaths, step: _Steps) -> None:
    """Each table's row count, then the example analyst query and its answer."""
    from iozen_etl.warehouse import format_table, run_query

    step("warehouse tables")
    counts = run_query(
        paths,
        " union all ".join(
            f"select '{name}' as table_name, count(*) as rows from {name}" for name in TABLES
        ),
    )
    print(format_table(counts))
    step('example query (iozen-etl sql "...")')
    print(EXAMPLE_QUERY)
    print(format_table(run_query(paths, EXAMPLE_QUERY)))


class _Steps:
    """Numbered progress lines on stderr, so stdout holds only the results."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, text: str) -> None:
        self.number += 1
        print(f"[{self.number}] {text}", file=sys.stderr, flush=True)

    def detail(self, text: str) -> None:
        print(f"    {text}", file=sys.stderr, flush=True)

    def fail(self, text: str) -> int:
        print(f"iozen-etl demo: {text}", file=sys.stderr)
        return 1
