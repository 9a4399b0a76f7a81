"""The ``iozen-etl`` command line: one sub-command per user task.

Each sub-command is one module in ``iozen_etl/commands/`` with ``configure(parser)`` and
``run(args) -> int``; this module only assembles them, so ``--help`` lists everything and there is
one way in (``iozen-etl`` or ``python -m iozen_etl``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

# name -> (module holding configure/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "sandbox": ("iozen_etl.commands.sandbox", "serve the ioZen API v1 sandbox on 127.0.0.1"),
    "sync": ("iozen_etl.commands.sync", "sync bots and submissions into Parquet and DuckDB"),
    "replay": ("iozen_etl.commands.replay", "replay a CSV file as idempotent submission POSTs"),
    "sql": ("iozen_etl.commands.sql", "run a read-only SQL query on the warehouse"),
    "rebuild": ("iozen_etl.commands.rebuild", "recreate the warehouse from the lake"),
    "webhooks": (
        "iozen_etl.commands.webhooks",
        "list, create and delete webhook endpoints; serve the receiver",
    ),
    "demo": ("iozen_etl.commands.demo", "sandbox + sync + replay + an example query"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iozen-etl",
        description=(
            "Keep a local SQL copy of an ioZen workspace. Reads IOZEN_API_KEY, IOZEN_BASE_URL "
            "(default https://app.iozen.ai/api/v1) and IOZEN_DATA_DIR (default ./data)."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.configure(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Dagster flags the single-run backfill policy as beta at import; that is for developers of
    # the definitions (the tests see it), not for someone running a command.
    warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")
    args = build_parser().parse_args(argv)
    code: int = args._run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
