"""Which bots the nightly reconcile rescans: those whose warehouse count disagrees with the API."""

from __future__ import annotations

from collections.abc import Collection

from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import WarehouseMissing, run_query


def bots_off_count(paths: DataPaths, bot_ids: Collection[str]) -> list[str]:
    """Bots among ``bot_ids`` whose submissions in the warehouse differ from ``submission_count``.

    Without a warehouse yet, every bot counts as off: the first reconcile is a full sync.
    """
    try:
        result = run_query(
            paths, "select intake_bot_id from v_bot_summary where count_matches_api is not true"
        )
    except WarehouseMissing:
        return sorted(bot_ids)
    off = {str(row[0]) for row in result.rows}
    return [bot_id for bot_id in bot_ids if bot_id in off]
