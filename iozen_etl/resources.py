"""Dagster resources: configuration in, plain objects out.

The resources hold settings only: a field left unset is read when a run starts, by the
``settings`` function that holds its default. The API key arrives through ``EnvVar`` in
``definitions.py`` and is handed straight to the client, which never prints it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import dagster as dg
from pydantic import Field

from iozen_etl.api import IozenClient, RetryPolicy
from iozen_etl.settings import DataPaths, base_url_from_env, in_progress_refresh_limit_from_env


class IozenApiResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The ioZen API v1: base URL and key; vends a client that shares the key's rate budget."""

    # Resolved at run time to the key itself: pydantic's repr and str would print it (a log line
    # or an error that shows the resource), so both leave it out.
    api_key: str = Field(repr=False)
    # None: IOZEN_BASE_URL at run time, else https://app.iozen.ai/api/v1.
    base_url: str | None = None
    # The most one request may spend waiting on retries before the sync stops, keeping every
    # committed page, to resume later (a run retry under the daemon).
    max_wait_s: float = RetryPolicy().max_total_wait
    # None: IOZEN_IN_PROGRESS_REFRESH_LIMIT at run time, else 100. Requests a run may spend
    # reading IN_PROGRESS submissions again.
    in_progress_refresh_limit: int | None = None

    @property
    def refresh_limit(self) -> int:
        """The run's budget of requests for reading IN_PROGRESS submissions again."""
        if self.in_progress_refresh_limit is None:
            return in_progress_refresh_limit_from_env()
        return self.in_progress_refresh_limit

    @contextmanager
    def client(self) -> Iterator[IozenClient]:
        retry = RetryPolicy(max_total_wait=self.max_wait_s)
        with IozenClient(self.api_key, self.base_url or base_url_from_env(), retry=retry) as client:
            yield client


class DataDirResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where the lake, the state file and the warehouse live (``IOZEN_DATA_DIR``)."""

    # None: IOZEN_DATA_DIR at run time, else ./data.
    path: str | None = None
    # None: IOZEN_LAKE_URI at run time, else the data directory's own ``parquet`` folder.
    lake_uri: str | None = None

    @property
    def paths(self) -> DataPaths:
        paths = DataPaths.from_env()
        if self.path:
            paths = replace(paths, root=Path(self.path).resolve())
        if self.lake_uri:
            paths = replace(paths, lake_uri=self.lake_uri)
        return paths
