"""The bot listing handed from ``intake_bots`` to ``submissions`` within one run.

A scheduled run lists the bots once: the ``intake_bots`` step records what it listed, tagged with
its run id, and the ``submissions`` step of the same run uses it instead of listing again. Any
other run (a backfill of ``submissions`` alone) finds no listing for its run id and lists itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from iozen_etl.api import IntakeBot
from iozen_etl.settings import DataPaths

FIELDS = ("id", "name", "status", "submission_count", "created_at", "updated_at")


def save_listing(paths: DataPaths, run_id: str, bots: Sequence[IntakeBot]) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    target = paths.root / "bot_listing.json"
    scratch = target.with_name(".bot_listing.json.tmp")
    records = [{name: getattr(bot, name) for name in FIELDS} for bot in bots]
    scratch.write_text(json.dumps({"run_id": run_id, "bots": records}))
    os.replace(scratch, target)


def load_listing(paths: DataPaths, run_id: str) -> list[IntakeBot] | None:
    """The listing this run's ``intake_bots`` step recorded, or None."""
    try:
        saved = json.loads((paths.root / "bot_listing.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    if saved.get("run_id") != run_id:
        return None
    return [
        IntakeBot(
            **{name: record[name] for name in FIELDS},
            description=None,
            share_url=None,
            schema=None,
            schema_shape=None,
            extra={},
        )
        for record in saved["bots"]
    ]
