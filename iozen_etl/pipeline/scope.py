"""The Dagster names of one workspace's definitions.

The workspace of the environment keeps the names a single workspace has always had (asset
``submissions``, job ``sync_job``, pool ``iozen``, partitions ``intake_bot``): its instance's
history and partitions stay valid. A workspace of a workspaces file prefixes each of them with
its name (``acme/submissions``, ``acme__sync_job``, ``iozen-acme``, ``acme__intake_bot``), so
several live in one code location, one asset group each, and its runs hold its own pool: each
workspace's sync is serialised, and different workspaces run side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from iozen_etl.settings import DataPaths
from iozen_etl.workspaces import ENVIRONMENT_WORKSPACE, Workspace

POOL = "iozen"


@dataclass(frozen=True)
class Scope:
    workspace: Workspace

    @property
    def prefixed(self) -> bool:
        return self.workspace.from_file

    @property
    def label(self) -> str:
        """How logs and errors name the workspace."""
        return f"workspace {self.workspace.name}"

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.workspace.name, name] if self.prefixed else [name])

    def name(self, name: str) -> str:
        """A job, schedule, sensor, check-set or partitions name."""
        return f"{self.workspace.name}__{name}" if self.prefixed else name

    def group(self, default: str) -> str:
        """One asset group per workspace of a file; the usual groups otherwise."""
        return self.workspace.name if self.prefixed else default

    @property
    def pool(self) -> str:
        return f"{POOL}-{self.workspace.name}" if self.prefixed else POOL

    @property
    def api_resource(self) -> str:
        """The resource key of the workspace's API client (its own key, never another's)."""
        return f"iozen_api_{self.workspace.name}" if self.prefixed else "iozen_api"

    def paths(self, data_dir: DataPaths) -> DataPaths:
        return self.workspace.paths(data_dir)


ENVIRONMENT = Scope(ENVIRONMENT_WORKSPACE)
