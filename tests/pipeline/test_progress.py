from __future__ import annotations

from iozen_etl.pipeline.progress import SyncProgress
from iozen_etl.sync.reports import BotSubmissionsReport


def test_progress_speaks_every_few_seconds_and_at_the_end():
    now = [0.0]
    lines: list[str] = []
    progress = SyncProgress(3, lines.append, every_s=5.0, clock=lambda: now[0])
    progress(BotSubmissionsReport("a", "synced", pages=2, rows_new=150))
    now[0] = 6.0
    progress(BotSubmissionsReport("b", "skipped"))
    now[0] = 7.0
    progress(BotSubmissionsReport("c", "synced", pages=1, rows_new=20))
    assert lines == [
        "2/3 bots, 2 pages, 150 rows in 6 s",
        "3/3 bots, 3 pages, 170 rows in 7 s",
    ]
