"""``iozen-etl replay FILE.csv --bot ID``: replay one CSV file as idempotent submission POSTs.

Exit status: 0 every row is created (now or earlier); 1 the replay stopped early (plan limit,
key refused, API unreachable, the state or rejects file could not be written) with the rest
left pending, or the API failed before any row;
2 the file or the command line is unusable and nothing was sent; 3 the file was worked through
but some rows need a person (rejected, conflict, held, pending).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TextIO

from iozen_etl.api import IozenClient
from iozen_etl.api.errors import IozenError
from iozen_etl.commands.workspace_option import add_workspace_option, chosen_workspace
from iozen_etl.replay.csvfile import CsvFileError
from iozen_etl.replay.engine import replay_csv
from iozen_etl.replay.report import ReplayProgress, ReplayReport
from iozen_etl.settings import DataPaths
from iozen_etl.workspaces import WorkspacesFileError

PROBLEMS_SHOWN = 20
EPILOG = """\
CSV: UTF-8 (a BOM is fine; other encodings stop with the row and column of the first
  byte that is not UTF-8), one header row of field names; header = row 1.
reserved columns: _idempotency_key (else derived from bot + answers), _status
  (COMPLETED | IN_PROGRESS), _is_test, _bot_id (several bots in one file).
values: numbers with '.' decimals; booleans true/false yes/no 1/0 y/n t/f; dates
  yyyy-mm-dd; multi-select a|b or ["a","b"]; an empty cell is null.
Bad rows go to NAME.rejects.csv beside the file, with _row and _reason; fix them
and replay that file as it is. A cell there that a spreadsheet would run as a formula
(first character = + - @, tab or CR, plain numbers aside) has a ' in front, which
replaying the file removes. The ledger (replay_ledger in $IOZEN_DATA_DIR/state.sqlite)
makes re-runs send only what is not created yet.
exit status: 0 all created; 1 stopped early (rest pending); 2 unusable file or
  command line, nothing sent; 3 done, but some rows need a person.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "file", metavar="FILE.csv", help="UTF-8 CSV with a header row of field names"
    )
    parser.add_argument(
        "--bot",
        metavar="ID",
        default=None,
        help="intake bot for rows whose _bot_id cell is empty (or with no _bot_id column)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and report what would be sent; send nothing, leave the ledger alone",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="also resend rows held because their first attempt is older than the key lifetime",
    )
    parser.add_argument(
        "--ignore-unknown-columns",
        action="store_true",
        help="skip columns that match no field instead of stopping",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, metavar="N", help="POSTs in flight (default 8)"
    )
    add_workspace_option(parser)


def run(args: argparse.Namespace) -> int:
    try:
        workspace = chosen_workspace(args)
    except WorkspacesFileError as error:
        _say(str(error))
        return 2
    api_key = workspace.api_key()
    if not api_key:
        _say(
            f"{workspace.api_key_env} is not set: export the ioZen API key to replay "
            "(it is never printed)"
        )
        return 2
    if args.concurrency < 1:
        _say("--concurrency must be at least 1")
        return 2
    progress = ProgressLine(sys.stderr)
    try:
        with IozenClient(api_key, workspace.api_base_url()) as client:
            report = replay_csv(
                client,
                workspace.paths(DataPaths.from_env()),
                args.file,
                bot_id=args.bot,
                dry_run=args.dry_run,
                force=args.force,
                ignore_unknown_columns=args.ignore_unknown_columns,
                concurrency=args.concurrency,
                progress=progress,
            )
    except FileNotFoundError:
        _say(f"{args.file}: no such file")
        return 2
    except CsvFileError as exc:
        progress.finish()
        _say(str(exc))
        return 2
    except IozenError as exc:
        progress.finish()
        _say(str(exc))
        return 1
    except OSError as exc:
        # The data directory or the rejects file could not be written (disk full, read-only):
        # every row recorded so far is kept, and a re-run goes on from there.
        progress.finish()
        _say(f"stopped: {exc}; rows not recorded as created are sent again by the next run")
        return 1
    progress.finish()
    _print_report(report)
    if report.stopped_reason is not None:
        _say(f"stopped: {report.stopped_reason}")
        return 1
    return 0 if report.complete else 3


def _print_report(report: ReplayReport) -> None:
    print(("dry run: " if report.dry_run else "") + report.summary())
    for problem in report.problems[:PROBLEMS_SHOWN]:
        print(f"  {problem}")
    hidden = len(report.problems) - PROBLEMS_SHOWN
    if hidden > 0:
        print(f"  ... and {hidden} more")
    if report.ignored_columns:
        print(f"ignored columns: {', '.join(report.ignored_columns)}")
    if report.rejects_path:
        print(f"rejected rows, with the reason in _reason: {report.rejects_path}")


def _say(message: str) -> None:
    print(f"iozen-etl replay: {message}", file=sys.stderr)


class ProgressLine:
    """Progress on stderr: one line redrawn in place on a terminal, else a line now and then."""

    def __init__(
        self,
        stream: TextIO,
        *,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        # A terminal is redrawn often; a log file gets a line every few seconds.
        self._every_s = 0.1 if self._tty else every_s
        self._clock = clock
        self._last_shown = clock()
        self._latest: ReplayProgress | None = None
        self._shown: ReplayProgress | None = None

    def __call__(self, progress: ReplayProgress) -> None:
        self._latest = progress
        now = self._clock()
        if now - self._last_shown >= self._every_s:
            self._last_shown = now
            self._show(progress)

    def _show(self, progress: ReplayProgress) -> None:
        self._shown = progress
        line = (
            f"replay: {progress.rows_done}/{progress.rows_total} rows, created {progress.created}, "
            f"already {progress.already_created}, rejected {progress.rejected}, "
            f"conflicts {progress.conflicts}, pending {progress.pending}, held {progress.held}"
        )
        if self._tty:
            self._stream.write("\r\x1b[K" + line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """Show the final count (if a line was shown at all) and end the redrawn line."""
        if self._shown is not None and self._latest is not self._shown and self._latest:
            self._show(self._latest)
        if self._tty and self._shown is not None:
            self._stream.write("\n")
            self._stream.flush()
