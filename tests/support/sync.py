"""The extraction engine on a data directory: its lake and state, one sync, state read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iozen_etl.api import IozenClient
from iozen_etl.settings import DataPaths
from iozen_etl.sync.bots import sync_bots
from iozen_etl.sync.lake import Lake
from iozen_etl.sync.reports import BotsReport, SubmissionsReport
from iozen_etl.sync.state import StateStore
from iozen_etl.sync.submissions import sync_submissions


class Workspace:
    """A data directory plus the engine's lake and state over it."""

    def __init__(self, root: Path) -> None:
        self.paths = DataPaths(root)
        self.lake = Lake(self.paths.parquet)

    def sync(
        self,
        client: IozenClient,
        **options: Any,
    ) -> tuple[BotsReport, SubmissionsReport]:
        """Bots then their submissions; ``options`` go to ``sync_submissions``."""
        with StateStore(self.paths.state_db) as state:
            bots = sync_bots(client, self.lake, state)
            subs = sync_submissions(client, self.lake, state, bots.bots, **options)
        return bots, subs


def in_progress_counts(state: StateStore) -> dict[str, int]:
    """IN_PROGRESS submissions tracked per bot."""
    return {bot: count for bot, (count, _) in state.in_progress_oldest_checks().items()}
