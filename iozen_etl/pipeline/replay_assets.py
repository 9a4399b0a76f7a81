"""The write path as a Dagster asset: one partition per inbox CSV file."""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations at definition time and needs real types, not strings.
from pathlib import PurePosixPath
from typing import Any

import dagster as dg

from iozen_etl.pipeline.assets import workspace_paths
from iozen_etl.pipeline.partitions import CSV_PARTITIONS_NAME
from iozen_etl.pipeline.reporting import replay_metadata
from iozen_etl.pipeline.scope import ENVIRONMENT, Scope
from iozen_etl.replay import replay_csv
from iozen_etl.resources import IozenApiResource


def default_bot_for(partition_key: str) -> str | None:
    """``inbox/<bot_id>/<file>.csv`` replays into that bot; top-level files need ``_bot_id``."""
    parts = PurePosixPath(partition_key).parts
    return parts[0] if len(parts) > 1 else None


def build_replay_asset(scope: Scope) -> dg.AssetsDefinition:
    """The replay asset of one workspace: its inbox, its key."""

    @dg.asset(
        key=scope.key("submission_replay"),
        group_name=scope.group("replay"),
        pool=scope.pool,
        partitions_def=dg.DynamicPartitionsDefinition(name=scope.name(CSV_PARTITIONS_NAME)),
        kinds={"csv", "api"},
        required_resource_keys={scope.api_resource, "data_dir"},
    )
    def submission_replay(context: dg.AssetExecutionContext) -> dg.MaterializeResult[Any]:
        """Each row of one inbox CSV file created once as a submission, whatever is re-run.

        Rows are keyed, recorded in ``replay_ledger`` before they are sent, and rejected rows
        are written to ``<file>.rejects.csv`` beside the file with their reasons.
        """
        paths = workspace_paths(context, scope)
        key = context.partition_key
        csv_path = paths.inbox / key
        iozen_api: IozenApiResource = getattr(context.resources, scope.api_resource)
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

    return submission_replay


submission_replay = build_replay_asset(ENVIRONMENT)
