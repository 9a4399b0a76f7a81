"""The ``sql/`` files (DDL and analyst views): where they are, and applying the changed ones."""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import duckdb

from iozen_etl.warehouse.merge import scalar


def _find_sql_dir() -> Path:
    """The ``sql/`` folder: the checkout's (source tree, editable install), else the wheel's.

    The files stay at the repository's top level; a wheel installs them as data files under
    ``<prefix>/share/iozen-etl/sql`` (``[tool.setuptools.data-files]`` in pyproject.toml).
    """
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "sql").is_dir():
        return checkout / "sql"
    return Path(sysconfig.get_path("data")) / "share" / "iozen-etl" / "sql"


SQL_DIR = _find_sql_dir()


def sql_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """The DDL and view files, in the order the load applies them."""
    files = sorted(sql_dir.glob("*.sql"))
    if not files:
        # A wheel built without the data files: fail before touching the warehouse.
        raise FileNotFoundError(f"no .sql files in {sql_dir} (is sql/ installed?)")
    return files


def quoted(name: str) -> str:
    """A name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def use_schema(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    """Make ``schema`` (created if new) the connection's current schema.

    The sql/ files and the load's statements name their tables unqualified: they resolve in
    the current schema, so one warehouse holds a workspace per schema with the same files.
    """
    con.execute(f"create schema if not exists {quoted(schema)}")
    con.execute(f"use {quoted(schema)}")


def apply_sql(con: duckdb.DuckDBPyConnection, sql_dir: Path = SQL_DIR) -> int:
    """Apply the sql/ files the current schema has not applied in their current version.

    Re-creating an unchanged view would still rewrite the catalog at every CHECKPOINT.
    Returns how many files were applied.
    """
    known = scalar(
        con,
        "select count(*) from duckdb_tables() where table_name = 'sql_files_applied'"
        " and schema_name = current_schema() and database_name = current_database()",
    )
    applied: dict[str, str] = {}
    if known:
        rows = con.execute("select file_name, sha256 from sql_files_applied").fetchall()
        applied = {str(name): str(sha) for name, sha in rows}
    count = 0
    for path in sql_files(sql_dir):
        text = path.read_text(encoding="utf-8")
        digest = hashlib.sha256(text.encode()).hexdigest()
        if applied.get(path.name) == digest:
            continue
        con.execute(text)
        con.execute("delete from sql_files_applied where file_name = ?", [path.name])
        con.execute("insert into sql_files_applied values (?, ?)", [path.name, digest])
        count += 1
    return count
