"""Progress of a long sync, a line every few seconds: in the run's log and on the command line.

The lines go to the Dagster run log (the UI) and to the ``iozen_etl.progress`` Python logger,
which ``iozen-etl sync`` prints on stderr. Counts only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from iozen_etl.sync.reports import BotSubmissionsReport

progress_logger = logging.getLogger("iozen_etl.progress")


class SyncProgress:
    """Called once per finished bot (from the engine's worker threads)."""

    def __init__(
        self,
        total_bots: int,
        log: Callable[[str], None],
        *,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_bots = total_bots
        self.log = log
        self.every_s = every_s
        self.clock = clock
        self.started = clock()
        self.last = self.started
        self.bots = 0
        self.rows = 0
        self.pages = 0
        self.lock = threading.Lock()

    def __call__(self, bot: BotSubmissionsReport) -> None:
        with self.lock:
            self.bots += 1
            self.rows += bot.rows_new + bot.rows_rescanned + bot.refresh_updated
            self.pages += bot.pages
            now = self.clock()
            if now - self.last < self.every_s and self.bots < self.total_bots:
                return
            self.last = now
            line = (
                f"{self.bots}/{self.total_bots} bots, {self.pages:,} pages, "
                f"{self.rows:,} rows in {now - self.started:.0f} s"
            )
        self.log(line)
        progress_logger.info(line)
