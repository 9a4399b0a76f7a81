"""Bot and CSV-file partitions, and the run tags that say which bots a run covers and how."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

BOT_PARTITIONS_NAME = "intake_bot"
CSV_PARTITIONS_NAME = "replay_csv"

# Dagster's own tag names for a partition-range run and for backfill runs (their constants are
# private, so the literal strings are used, as Dagster's docs do).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"

SYNC_MODE_TAG = "iozen/sync_mode"
ON_CEILING_TAG = "iozen/on_ceiling"

INCREMENTAL = "incremental"
FULL = "full"
RECONCILE = "reconcile"
SYNC_MODES = (INCREMENTAL, FULL, RECONCILE)


# A bot's partition key: a slug of its name when it was discovered, then its id, so the UI's
# partition lists, pickers and backfill chips show which bot is which and a name typed there
# finds it. The slug never holds the separator, so the id is everything after the first one.
KEY_SEPARATOR = "__"
SLUG_LENGTH = 40


def bot_partition_key(bot_id: str, name: str) -> str:
    """``support-ticket__cmmfdtuun0001b0t08o5rcma6`` for the bot "Support Ticket"."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:SLUG_LENGTH].strip("-")
    return f"{slug}{KEY_SEPARATOR}{bot_id}" if slug else bot_id


def bot_id_of(key: str) -> str:
    """The bot id a partition key names (a key of an older instance is the id itself)."""
    _, separator, bot_id = key.partition(KEY_SEPARATOR)
    return bot_id if separator else key


def usable_bot_keys(keys: Sequence[str]) -> list[str]:
    """The keys a run can name: a blank one names no bot and cannot end a range (Dagster drops
    an empty range tag)."""
    return [key for key in keys if key.strip()]


def range_tags(start: str, end: str, mode: str = INCREMENTAL) -> dict[str, str]:
    """Tags for one run over the bot partitions ``start``..``end`` (in discovery order)."""
    return {RANGE_START_TAG: start, RANGE_END_TAG: end, SYNC_MODE_TAG: mode}


def sync_mode(tags: Mapping[str, str]) -> str:
    """A backfill always re-syncs its bots in full; otherwise the run's tag decides."""
    if BACKFILL_TAG in tags:
        return FULL
    mode = tags.get(SYNC_MODE_TAG, INCREMENTAL)
    if mode not in SYNC_MODES:
        raise ValueError(f"unknown {SYNC_MODE_TAG} {mode!r}; expected one of {SYNC_MODES}")
    return mode


def contiguous_ranges(all_keys: Sequence[str], chosen: Iterable[str]) -> list[tuple[str, str]]:
    """The fewest (start, end) ranges of ``all_keys`` that cover exactly ``chosen``.

    Dagster runs take a contiguous range of partitions, so a non-contiguous choice needs one run
    per stretch, as its single-run backfill policy does.
    """
    wanted = set(chosen)
    missing = wanted - set(all_keys)
    if missing:
        raise KeyError(f"unknown bot partition(s): {', '.join(sorted(missing))}")
    ranges: list[tuple[str, str]] = []
    start: str | None = None
    previous: str | None = None
    for key in all_keys:
        if key in wanted:
            start = start if start is not None else key
            previous = key
        elif start is not None and previous is not None:
            ranges.append((start, previous))
            start = None
    if start is not None and previous is not None:
        ranges.append((start, previous))
    return ranges
