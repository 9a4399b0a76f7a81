"""Several sandbox workspaces served on loopback, the workspaces file naming them, and
``iozen-etl sync --workspace`` started for each at once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.workspaces import key_env, write_workspaces_file
from iozen_etl.sandbox import RunningServer, Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths

WRONG_KEY = "iozen_wrong_0000000000000000"


@dataclass(frozen=True)
class ServedWorkspace:
    name: str
    sandbox: Sandbox
    server: RunningServer
    key_env: str
    key: str  # what the environment gives the pipeline: the sandbox's key, or a wrong one

    def paths(self, data_dir: DataPaths) -> DataPaths:
        return data_dir.for_workspace(self.name)


@dataclass(frozen=True)
class Workspaces:
    members: list[ServedWorkspace]
    file: Path

    def env(self) -> dict[str, str]:
        """The workspaces file and each workspace's key, as the pipeline reads them."""
        return {
            "IOZEN_WORKSPACES_FILE": str(self.file),
            **{member.key_env: member.key for member in self.members},
        }

    def names(self) -> list[str]:
        return [member.name for member in self.members]

    def __getitem__(self, name: str) -> ServedWorkspace:
        return next(member for member in self.members if member.name == name)


@contextmanager
def served_workspaces(
    configs: Mapping[str, SandboxConfig], folder: Path, *, wrong_key: Sequence[str] = ()
) -> Iterator[Workspaces]:
    """Each config served as the workspace of its name, with the file naming them all.

    The workspaces named in ``wrong_key`` are given a key their sandbox refuses.
    """
    members = []
    with ExitStack() as stack:
        for name, config in configs.items():
            sandbox = Sandbox(config)
            server = serve(sandbox)
            stack.callback(server.close)
            key = WRONG_KEY if name in wrong_key else sandbox.api_key
            members.append(ServedWorkspace(name, sandbox, server, key_env(name), key))
        file = folder / "workspaces.toml"
        write_workspaces_file(file, {m.name: m.server.base_url for m in members})
        yield Workspaces(members, file)


@dataclass(frozen=True)
class CommandResult:
    workspace: str
    returncode: int
    stdout: str
    stderr: str


def sync_in_parallel(
    workspaces: Workspaces, names: Sequence[str], env: Mapping[str, str], timeout_s: float = 300
) -> dict[str, CommandResult]:
    """``iozen-etl sync --workspace NAME`` for each name, all started at once."""
    child_env = {**os.environ, **workspaces.env(), **env}
    child_env.pop("IOZEN_API_KEY", None)
    started = {
        name: subprocess.Popen(
            [sys.executable, "-m", "iozen_etl", "sync", "--workspace", name],
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    }
    results = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=timeout_s)
        results[name] = CommandResult(name, process.returncode, stdout, stderr)
    return results
