"""The ioZen workspaces to sync: one from the environment, or several from a TOML file.

Without ``IOZEN_WORKSPACES_FILE`` there is one workspace, ``default``, keyed by
``IOZEN_API_KEY`` at ``IOZEN_BASE_URL``: nothing to configure, and every name (assets, jobs,
paths, the warehouse schema ``main``) is what a single workspace has always had. A file names
several, each with the environment variable that holds its key::

    [workspaces.acme]
    api_key_env = "IOZEN_API_KEY_ACME"

    [workspaces.globex]
    api_key_env = "IOZEN_API_KEY_GLOBEX"
    base_url = "https://app.iozen.ai/api/v1"   # the default
    in_progress_refresh_limit = 50             # default: IOZEN_IN_PROGRESS_REFRESH_LIMIT

A workspace's name prefixes its assets, jobs and partitions, names its pool, its folder under
the data directory, its lake prefix and its warehouse schema; so it is kept to what all of
those accept. The file holds no key: only the names of the variables that do.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from iozen_etl.settings import API_KEY_ENV, DataPaths, base_url_from_env, workspaces_file_from_env

DEFAULT_WORKSPACE = "default"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
# Names DuckDB or the warehouse already use (schemas, the writer and published databases'
# names, the wide views' schema ``bots``), and the workspace of the environment's. A name ending
# in ``_bots`` is refused too: that is the schema of another workspace's wide views.
_RESERVED = {
    *("main", "information_schema", "pg_catalog", "temp", "system", "memory"),
    *("iozen", "iozen_write", "bots", DEFAULT_WORKSPACE),
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELDS = {"api_key_env", "base_url", "in_progress_refresh_limit"}


class WorkspacesFileError(ValueError):
    """The workspaces file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Workspace:
    """One ioZen workspace: where its API is and which environment variable holds its key."""

    name: str
    api_key_env: str = API_KEY_ENV
    # None: IOZEN_BASE_URL, else ioZen's own.
    base_url: str | None = None
    # None: IOZEN_IN_PROGRESS_REFRESH_LIMIT, else its default.
    in_progress_refresh_limit: int | None = None

    @property
    def from_file(self) -> bool:
        """Whether the workspace is named by a workspaces file (its names carry a prefix)."""
        return self.name != DEFAULT_WORKSPACE

    def api_key(self) -> str:
        """The key, from the workspace's variable ("" when unset); for a client, never a log."""
        return os.environ.get(self.api_key_env, "").strip()

    def api_base_url(self) -> str:
        return self.base_url or base_url_from_env()

    def paths(self, data_dir: DataPaths) -> DataPaths:
        """The workspace's own files under the data directory ``data_dir``."""
        return data_dir.for_workspace(self.name) if self.from_file else data_dir


ENVIRONMENT_WORKSPACE = Workspace(DEFAULT_WORKSPACE)


def load_workspaces(path: Path | None = None) -> list[Workspace]:
    """The workspaces of ``path`` (default: ``IOZEN_WORKSPACES_FILE``), in the file's order; the
    workspace of the environment when there is no file."""
    path = path if path is not None else workspaces_file_from_env()
    if path is None:
        return [ENVIRONMENT_WORKSPACE]
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise WorkspacesFileError(f"{path}: cannot be read: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise WorkspacesFileError(f"{path}: not valid TOML: {error}") from error
    unknown = sorted(set(document) - {"workspaces"})
    if unknown:
        raise WorkspacesFileError(f"{path}: unknown table(s) {', '.join(unknown)}")
    entries = document.get("workspaces")
    if not isinstance(entries, dict) or not entries:
        raise WorkspacesFileError(f"{path}: no [workspaces.<name>] table")
    return [_workspace(path, name, entry) for name, entry in entries.items()]


def choose_workspace(name: str | None, workspaces: list[Workspace]) -> Workspace:
    """The workspace a command acts on: ``name``, or the only one there is."""
    if name is None:
        if len(workspaces) == 1:
            return workspaces[0]
        names = ", ".join(w.name for w in workspaces)
        raise WorkspacesFileError(f"the workspaces file names several: choose one ({names})")
    for workspace in workspaces:
        if workspace.name == name:
            return workspace
    names = ", ".join(w.name for w in workspaces)
    raise WorkspacesFileError(f"unknown workspace {name!r}; known: {names}")


def _workspace(path: Path, name: str, entry: object) -> Workspace:
    where = f"{path}: [workspaces.{name}]"
    if not _NAME.fullmatch(name) or name in _RESERVED or name.endswith("_bots"):
        raise WorkspacesFileError(
            f"{where}: a name is a lower-case letter then up to 39 lower-case letters, digits "
            f"or underscores, does not end in _bots, and is not one of "
            f"{', '.join(sorted(_RESERVED))}"
        )
    if not isinstance(entry, dict):
        raise WorkspacesFileError(f"{where}: expected a table")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise WorkspacesFileError(
            f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(_FIELDS))}"
        )
    api_key_env = entry.get("api_key_env")
    if not isinstance(api_key_env, str) or not _ENV_NAME.fullmatch(api_key_env):
        raise WorkspacesFileError(
            f"{where}: api_key_env must name the environment variable that holds the key "
            "(the key itself never goes in this file)"
        )
    base_url = entry.get("base_url")
    if base_url is not None and (
        not isinstance(base_url, str) or not base_url.startswith(("https://", "http://"))
    ):
        raise WorkspacesFileError(f"{where}: base_url must be an http(s) URL")
    limit = entry.get("in_progress_refresh_limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise WorkspacesFileError(f"{where}: in_progress_refresh_limit must be a whole number >= 0")
    return Workspace(name, api_key_env, base_url, limit)
