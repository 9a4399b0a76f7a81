"""The write path as a Dagster asset: one partition per inbox CSV file."""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations at definition time and needs real types, not strings.
from pathlib import PurePosixPath
from typing import Any

import dagster as dg

from iozen_etl.pipeline.assets import POOL
from iozen_etl.pipeline.partitions import CSV_PARTITIONS
from iozen_etl.pipeline.reporting import replay_metadata
from iozen_etl.replay import replay_csv
from iozen_etl.resources import DataDirResource, IozenApiResource


def default_bot_for(partition_key: str) -> str | None:
    """``inbox/<bot_id>/<file>.csv`` replays into that bot; top-level files need ``_bot_id``."""
    parts = PurePosixPath(partition_key).parts
    return parts[0] if len(parts) > 1 else None


@dg.asset(group_name="replay", pool=POOL, partitions_def=CSV_PARTITIONS, kinds={"csv", "api"})
def submission_replay(
    context: dg.AssetExecutionContext, iozen_api: IozenApiResource, data_dir: DataDirResource
) -> dg.MaterializeResult[Any]:
    """Each row of one inbox CSV file created once as a submission, whatever is re-run.

    Rows are keyed, recorded in ``replay_ledger`` before they are sent, and rejected rows are
    written to ``<file>.rejects.csv`` beside the file with their reasons.
    """
    paths = data_dir.paths
    key = context.partition_key
    csv_path = paths.inbox / key
    with iozen_api.client() as client:
        report = replay_csv(client, paths, csv_path, bot_id=default_bot_for(key))
    metadata = replay_metadata(report)
    if report.stopped_reason:
        raise dg.Failure(
            description=f"replay of {key} stopped: {report.stopped_reason}; "
            "unsent rows stay pending and are sent by the next run",
            metadata=metadata,
            allow_retries=False,
        )
    return dg.MaterializeResult(metadata=metadata)
