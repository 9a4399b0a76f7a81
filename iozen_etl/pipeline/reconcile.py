"""Which bots the nightly reconcile rescans: those whose lake count disagrees with the API's.

The sync decides from what it wrote itself (the lake and the state file), never from the
warehouse downstream of it: the lake holds every submission the warehouse holds, and those a
load has yet to merge.
"""

from __future__ import annotations

from collections.abc import Collection

import pyarrow.compute as pc

from iozen_etl.sync.lake import Lake
from iozen_etl.sync.state import SCHEMA_STREAM, StateStore


def bots_off_count(state: StateStore, lake: Lake, bot_ids: Collection[str]) -> list[str]:
    """Bots among ``bot_ids`` whose submissions in the lake differ from the ``submission_count``
    the bot listing last recorded; a bot whose count was never recorded counts as off."""
    recorded = {bot: seen.seen_submission_count for bot, seen in state.all(SCHEMA_STREAM).items()}
    return [
        bot_id
        for bot_id in bot_ids
        if recorded.get(bot_id) is None or submissions_held(lake, bot_id) != recorded[bot_id]
    ]


def submissions_held(lake: Lake, bot_id: str) -> int:
    """Distinct submissions of the bot in the lake: every generation and refresh file, merged
    by id as the warehouse merges them."""
    files = lake.bot_files("submissions", bot_id)
    if files is None:
        return 0
    return int(pc.count_distinct(files.to_table(columns=["id"]).column("id")).as_py())
