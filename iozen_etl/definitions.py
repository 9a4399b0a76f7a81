"""The one ``Definitions`` of iozen-etl: per workspace, assets in flow order, checks, jobs,
schedules and sensors.

Without a workspaces file there is one workspace, from the environment, with the names a single
workspace has always had. With ``IOZEN_WORKSPACES_FILE`` (``iozen_etl/workspaces.py``), each
workspace it names gets the same set under its own prefix and asset group, its own pool and its
own API resource, bound to the environment variable the file names for its key.

Resources come from the environment when a run starts: each key through ``EnvVar`` (never
shown in the UI), ``IOZEN_BASE_URL``, ``IOZEN_IN_PROGRESS_REFRESH_LIMIT``, ``IOZEN_DATA_DIR``
and ``IOZEN_LAKE_URI``; the workspaces and the schedules' crons when the definitions load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from iozen_etl.pipeline.assets import build_assets
from iozen_etl.pipeline.automation import build_automation
from iozen_etl.pipeline.checks import build_warehouse_checks
from iozen_etl.pipeline.replay_assets import build_replay_asset
from iozen_etl.pipeline.scope import Scope
from iozen_etl.resources import DataDirResource, IozenApiResource
from iozen_etl.workspaces import Workspace, load_workspaces


def workspace_definitions(workspace: Workspace) -> dg.Definitions:
    """Everything one workspace runs, with its API resource."""
    scope = Scope(workspace)
    assets = build_assets(scope)
    replay = build_replay_asset(scope)
    automation = build_automation(scope, assets, replay)
    return dg.Definitions(
        assets=[*assets, replay],
        asset_checks=[build_warehouse_checks(scope)],
        jobs=automation.jobs,
        schedules=automation.schedules,
        sensors=automation.sensors,
        resources={
            # One client per step, sharing the key's rate budget inside the process. A
            # workspace's steps see its own key only.
            scope.api_resource: IozenApiResource(
                api_key=dg.EnvVar(workspace.api_key_env),
                base_url=workspace.base_url,
                in_progress_refresh_limit=workspace.in_progress_refresh_limit,
            ),
        },
    )


def build_definitions(workspaces: Sequence[Workspace]) -> dg.Definitions:
    """One code location holding every workspace (docs/decisions.md says why not one each)."""
    resources: dict[str, Any] = {
        # The lake, the state files and the warehouse, under IOZEN_DATA_DIR (and the lake at
        # IOZEN_LAKE_URI when set), read at run time.
        "data_dir": DataDirResource(),
    }
    return dg.Definitions.merge(
        *(workspace_definitions(workspace) for workspace in workspaces),
        dg.Definitions(
            resources=resources,
            # One process per run: the sync spreads its own work over threads (sharing one rate
            # budget), and a workspace's runs are serialised by its pool anyway, so a process
            # per step would only add start-up.
            executor=dg.in_process_executor,
        ),
    )


defs = build_definitions(load_workspaces())
