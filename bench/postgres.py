"""A PostgreSQL server of its own on loopback, for the tests and benchmarks that keep Dagster's
runs, events and schedules in PostgreSQL (``dagster_home/production/dagster.yaml``).

It uses the machine's server binaries (Debian's ``postgresql`` package): ``initdb`` makes a
cluster in a new temporary folder, ``pg_ctl`` starts it on 127.0.0.1 with its socket in that
folder, and stops it (fast) when the block ends. The superuser's password is generated here,
given to ``initdb`` in a file that is removed at once, and never printed. PostgreSQL's server
refuses to run as root; as root, the binaries run as the ``postgres`` system user the package
creates, over a folder handed to that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy

MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql package"
)
NO_SERVER_USER = (
    "running as root, and PostgreSQL's server refuses root: no 'postgres' system user to run it "
    "as; install Debian's postgresql package"
)
REPO = Path(__file__).resolve().parents[1]
PRODUCTION_INSTANCE = REPO / "dagster_home" / "production" / "dagster.yaml"
SERVER_USER = "postgres"
SUPERUSER = "dagster"
HOST = "127.0.0.1"
# What dagster_home/production/dagster.yaml reads the connection from.
ENV_NAMES = {
    "username": "DAGSTER_PG_USERNAME",
    "password": "DAGSTER_PG_PASSWORD",
    "host": "DAGSTER_PG_HOST",
    "db_name": "DAGSTER_PG_DB",
    "port": "DAGSTER_PG_PORT",
}

# Dagster's switches the Makefile exports (and ``iozen-etl sync`` sets when unset): one planned
# event for a run over many bot partitions, and events written in batches where the storage can.
EVENT_BATCHING = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
}


def new_production_home(folder: Path) -> Path:
    """A new Dagster home holding a copy of the production instance file (which reads the
    DAGSTER_PG_* variables of whoever opens it)."""
    folder.mkdir(parents=True)
    shutil.copy(PRODUCTION_INSTANCE, folder / "dagster.yaml")
    return folder


@dataclass(frozen=True)
class Binaries:
    initdb: Path
    pg_ctl: Path


def find_binaries() -> Binaries | None:
    """``initdb`` and ``pg_ctl`` on PATH, else in the newest /usr/lib/postgresql/*/bin."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Binaries(Path(initdb), Path(pg_ctl))
    folders = [Path(folder) for folder in glob.glob("/usr/lib/postgresql/*/bin")]
    versioned = [folder for folder in folders if folder.parent.name.isdigit()]
    for folder in sorted(versioned, key=lambda folder: int(folder.parent.name), reverse=True):
        initdb_path, pg_ctl_path = folder / "initdb", folder / "pg_ctl"
        if initdb_path.is_file() and pg_ctl_path.is_file():
            return Binaries(initdb_path, pg_ctl_path)
    return None


def unavailable_reason() -> str | None:
    """Why no server can be started on this machine, or None when one can."""
    if find_binaries() is None:
        return MISSING
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return NO_SERVER_USER
    return None


@dataclass(frozen=True)
class PostgresDatabase:
    """How to reach one database of the server: what Dagster's instance file reads."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    db_name: str = "postgres"

    def env(self) -> dict[str, str]:
        """The DAGSTER_PG_* variables dagster_home/production/dagster.yaml reads."""
        return {
            ENV_NAMES["username"]: self.username,
            ENV_NAMES["password"]: self.password,
            ENV_NAMES["host"]: self.host,
            ENV_NAMES["db_name"]: self.db_name,
            ENV_NAMES["port"]: str(self.port),
        }

    def engine(self) -> sqlalchemy.Engine:
        """An engine on this database (the caller disposes of it)."""
        url = sqlalchemy.URL.create(
            "postgresql+psycopg2",
            username=self.username,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.db_name,
        )
        return sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)


@dataclass(frozen=True)
class PostgresServer:
    """A running server; ``create_database`` makes a new, empty database on it."""

    superuser: PostgresDatabase  # the maintenance database, "postgres"
    data_dir: Path

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used so far: the postmaster, the connections' processes
        it has reaped, and its processes still running (Linux's /proc)."""
        pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        total = sum(_proc_stat(pid)[11:15])  # utime, stime, cutime, cstime
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = _proc_stat(int(stat.parent.name))
            except (OSError, ValueError):
                continue  # gone since the listing
            if fields[1] == pid:  # ppid
                total += fields[11] + fields[12]
        return total / ticks

    def create_database(self, name: str) -> PostgresDatabase:
        engine = self.superuser.engine().execution_options(isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as con:
                quoted = engine.dialect.identifier_preparer.quote(name)
                con.execute(sqlalchemy.text(f"create database {quoted}"))
        finally:
            engine.dispose()
        return PostgresDatabase(
            self.superuser.host,
            self.superuser.port,
            self.superuser.username,
            self.superuser.password,
            name,
        )


@contextlib.contextmanager
def postgres_server(port: int) -> Iterator[PostgresServer]:
    """A new PostgreSQL cluster served on 127.0.0.1:``port`` until the block ends."""
    binaries = find_binaries()
    reason = unavailable_reason()
    if binaries is None or reason is not None:
        raise RuntimeError(reason or MISSING)
    as_root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="iozen-postgres-"))
    data = folder / "data"
    log = folder / "server.log"
    password = secrets.token_urlsafe(24)
    try:
        if as_root:
            server_user = pwd.getpwnam(SERVER_USER)
            os.chown(folder, server_user.pw_uid, server_user.pw_gid)
        password_file = folder / "password"
        password_file.write_text(password)
        password_file.chmod(0o600)
        if as_root:
            os.chown(password_file, server_user.pw_uid, server_user.pw_gid)
        try:
            _run(
                as_root,
                binaries.initdb,
                "--pgdata",
                str(data),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(password_file),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-locale",
                # A throwaway cluster: initdb need not wait for its files to reach the disk.
                "--no-sync",
                log=log,
            )
        finally:
            password_file.unlink()
        options = f"-c listen_addresses={HOST} -c port={port} -c unix_socket_directories={folder}"
        _run(
            as_root,
            binaries.pg_ctl,
            "start",
            "--pgdata",
            str(data),
            "--log",
            str(log),
            "--wait",
            "--timeout",
            "60",
            "--options",
            options,
            log=log,
        )
        try:
            yield PostgresServer(PostgresDatabase(HOST, port, SUPERUSER, password), data)
        finally:
            _run(
                as_root,
                binaries.pg_ctl,
                "stop",
                "--pgdata",
                str(data),
                "--mode",
                "fast",
                "--wait",
                log=log,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(as_root: bool, binary: Path, *args: str, log: Path) -> None:
    """Run a server binary (as the server's user when we are root); on failure, raise with its
    output and the server log's tail (neither holds the password: it is only in a file)."""
    command: Sequence[str] = [str(binary), *args]
    if as_root:
        command = ["runuser", "-u", SERVER_USER, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(
            f"{binary.name} failed ({done.returncode}): "
            f"{(done.stdout + done.stderr).strip()[-2000:]}\n{tail}"
        )


def _proc_stat(pid: int) -> list[int]:
    """The numeric fields of /proc/<pid>/stat after the command name: [state (0), ppid, ...]."""
    text = Path(f"/proc/{pid}/stat").read_text()
    after_name = text[text.rindex(")") + 2 :].split()
    return [0, *(int(field) for field in after_name[1:])]
