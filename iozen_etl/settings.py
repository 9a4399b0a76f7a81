"""Non-secret configuration: where things live and what the defaults are.

Every setting is read from the environment here, by the functions below, each with its one
default; the Dagster resources call them for the fields left unset. The API key is read only
where a client is built (the Dagster resource binds it with ``EnvVar``); it is never stored in a
settings object that might be printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

DEFAULT_BASE_URL = "https://app.iozen.ai/api/v1"
API_KEY_ENV = "IOZEN_API_KEY"
BASE_URL_ENV = "IOZEN_BASE_URL"
DATA_DIR_ENV = "IOZEN_DATA_DIR"
# Where the Parquet lake lives when not under the data directory: ``s3://bucket/prefix`` (any
# URI pyarrow's filesystems open). Unset: ``<data dir>/parquet``.
LAKE_URI_ENV = "IOZEN_LAKE_URI"
# A TOML file naming several ioZen workspaces (docs/deployment.md). Unset: one workspace, from
# IOZEN_API_KEY and IOZEN_BASE_URL.
WORKSPACES_FILE_ENV = "IOZEN_WORKSPACES_FILE"
# Requests a run may spend reading IN_PROGRESS submissions again (pages or GETs): at a
# 15-minute schedule the default is at most 400 requests an hour, a small share of either
# plan's budget.
IN_PROGRESS_REFRESH_ENV = "IOZEN_IN_PROGRESS_REFRESH_LIMIT"
DEFAULT_IN_PROGRESS_REFRESH_LIMIT = 100
# Bots synced at once (threads): their requests overlap; the rate budget is shared.
DEFAULT_CONCURRENCY = 8
# The sync_freshness check warns after this many minutes without a successful sync: the hour
# after which the warehouse's freshness policy warns too.
MAX_SYNC_AGE_ENV = "IOZEN_MAX_SYNC_AGE_MINUTES"
DEFAULT_MAX_SYNC_AGE_MINUTES = 60
# The webhook receiver (`iozen-etl webhooks serve`): loopback unless told otherwise, since it
# belongs behind an HTTPS reverse proxy; the endpoint's signing secret.
WEBHOOK_SECRET_ENV = "IOZEN_WEBHOOK_SECRET"
DEFAULT_RECEIVER_HOST = "127.0.0.1"
DEFAULT_RECEIVER_PORT = 8787
# The schedules' crons, read when the definitions load.
SYNC_CRON_ENV = "IOZEN_SYNC_CRON"
DEFAULT_SYNC_CRON = "*/15 * * * *"
RECONCILE_CRON_ENV = "IOZEN_RECONCILE_CRON"
DEFAULT_RECONCILE_CRON = "0 3 * * *"


@dataclass(frozen=True)
class DataPaths:
    """Every file iozen-etl writes, under one data directory.

    A workspace of a workspaces file has its own (``for_workspace``): its state file, lock,
    inbox and events under ``<root>/workspaces/<name>``, its lake under the lake's
    ``<name>/`` prefix and its tables in the warehouse schema ``<name>``; the warehouse files
    stay those of the data directory. The one workspace of the environment uses the data
    directory itself, the lake's root and the schema ``main``.
    """

    root: Path
    # None: the lake is ``<root>/parquet`` on the local disk.
    lake_uri: str | None = None
    # The directory holding the warehouse files; None: ``root``.
    warehouse_root: Path | None = field(default=None)
    warehouse_schema: str = "main"

    @classmethod
    def from_env(cls) -> DataPaths:
        return cls(
            Path(os.environ.get(DATA_DIR_ENV, "./data")).resolve(),
            lake_uri=os.environ.get(LAKE_URI_ENV) or None,
        )

    def for_workspace(self, name: str) -> DataPaths:
        """The paths of the workspace ``name`` of a workspaces file."""
        return replace(
            self,
            root=self.root / "workspaces" / name,
            lake_uri=None if self.lake_uri is None else _lake_prefix(self.lake_uri, name),
            warehouse_root=self._warehouse_root,
            warehouse_schema=name,
        )

    @property
    def _warehouse_root(self) -> Path:
        return self.root if self.warehouse_root is None else self.warehouse_root

    @property
    def lake(self) -> str:
        """The lake's location: its URI, or the local folder ``parquet`` as a path string."""
        return self.lake_uri if self.lake_uri is not None else str(self.parquet)

    @property
    def parquet(self) -> Path:
        """The local Parquet lake: ``parquet/<table>/bot_id=<segment>/<file>.parquet`` (unused
        when ``lake_uri`` is set)."""
        return self.root / "parquet"

    @property
    def state_db(self) -> Path:
        """SQLite file holding ``sync_state`` and ``replay_ledger`` (committed per page / row)."""
        return self.root / "state.sqlite"

    @property
    def sync_lock(self) -> Path:
        """Held by the one sync of this data directory at a time (``sync/lock.py``)."""
        return self.root / "sync.lock"

    @property
    def writer_db(self) -> Path:
        """The warehouse's private read-write DuckDB file; only the load opens it."""
        return self._warehouse_root / "warehouse" / "iozen_write.duckdb"

    @property
    def published_db(self) -> Path:
        """The snapshot analysts open read-only; replaced atomically after each load."""
        return self._warehouse_root / "iozen.duckdb"

    @property
    def webhook_events(self) -> Path:
        """SQLite file of the events the webhook receiver kept, until the pipeline acts on them."""
        return self.root / "webhook_events.sqlite"

    @property
    def inbox(self) -> Path:
        """CSV files dropped here are replayed by the inbox sensor."""
        return self.root / "inbox"


def _lake_prefix(lake_uri: str, name: str) -> str:
    """``name`` under the lake URI's path, before its query (``s3://b/p?region=x`` ->
    ``s3://b/p/name?region=x``)."""
    location, mark, query = lake_uri.partition("?")
    return f"{location.rstrip('/')}/{name}{mark}{query}"


def workspaces_file_from_env() -> Path | None:
    value = os.environ.get(WORKSPACES_FILE_ENV)
    return Path(value) if value else None


def base_url_from_env() -> str:
    return os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL)


def in_progress_refresh_limit_from_env() -> int:
    return int(os.environ.get(IN_PROGRESS_REFRESH_ENV, DEFAULT_IN_PROGRESS_REFRESH_LIMIT))


def max_sync_age_from_env() -> timedelta:
    return timedelta(minutes=float(os.environ.get(MAX_SYNC_AGE_ENV, DEFAULT_MAX_SYNC_AGE_MINUTES)))


def sync_cron_from_env() -> str:
    return os.environ.get(SYNC_CRON_ENV, DEFAULT_SYNC_CRON)


def reconcile_cron_from_env() -> str:
    return os.environ.get(RECONCILE_CRON_ENV, DEFAULT_RECONCILE_CRON)
