"""Looking for API keys where they must never be: in files (raw, and decoded where a format
compresses its strings) and in texts a user saw, and reading Dagster's storage back as text.

Each key is searched in every form it could be written in: as is, URL-encoded, JSON-escaped,
hex, and base64 (standard and URL-safe, at each of the three alignments it could have inside a
longer base64 text). Parquet and DuckDB compress and dictionary-encode strings, so their raw
bytes can hide a key: their string columns are decoded and searched value by value, and so are
SQLite's (Dagster's storage and the state file), whose BLOBs are also searched once inflated
(Dagster keeps its snapshots zlib-compressed). A finding names the key by its number and the
form, never the key itself.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import sqlite3
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from iozen_etl.pipeline.partitions import BOT_PARTITIONS_NAME, CSV_PARTITIONS_NAME

# Shorter strings turn up by chance in any file; a real key is far longer.
MIN_KEY_LENGTH = 8
SQLITE_MAGIC = b"SQLite format 3\x00"
PARQUET_MAGIC = b"PAR1"
DUCKDB_MAGIC = b"DUCK"  # at offset 8
STRING_TYPES = ("VARCHAR", "JSON", "BLOB")
# SQLite rows searched at a time: the values of a batch are joined and searched together.
SQLITE_BATCH_ROWS = 10_000


@dataclass(frozen=True)
class Needle:
    key_number: int  # which key: its position among the keys searched, never the key
    form: str
    text: str

    @property
    def raw(self) -> bytes:
        return self.text.encode("utf-8")


def needles(key: str, number: int) -> list[Needle]:
    """Every form ``key`` (and its stripped self, which the client sends) could be written in."""
    found: dict[str, str] = {}
    for variant in dict.fromkeys((key, key.strip())):
        raw = variant.encode("utf-8")
        found.setdefault(variant, "as is")
        found.setdefault(quote(variant, safe=""), "URL-encoded")
        found.setdefault(quote_plus(variant), "URL-encoded")
        found.setdefault(json.dumps(variant)[1:-1], "JSON-escaped")
        found.setdefault(json.dumps(variant, ensure_ascii=False)[1:-1], "JSON-escaped")
        found.setdefault(raw.hex(), "hex")
        for prefix in range(3):
            # The characters that depend on the key's bytes alone, whatever comes before or after.
            encoded = base64.b64encode(b"\0" * prefix + raw).decode("ascii")
            first, end = -(-8 * prefix // 6), 8 * (prefix + len(raw)) // 6
            for alphabet, text in (("base64", encoded), ("base64url", _urlsafe(encoded))):
                found.setdefault(text[first:end], alphabet)
    return [Needle(number, form, text) for text, form in found.items()]


def _urlsafe(text: str) -> str:
    return text.replace("+", "-").replace("/", "_")


@dataclass
class SecretScan:
    """What one scan looked at, and every place it found a key."""

    needles: list[Needle]
    keys: int = 0
    files: int = 0
    values: int = 0  # decoded DuckDB, Parquet and SQLite values
    texts: int = 0
    decoded: set[str] = field(default_factory=set)  # the formats decoded at least once
    undecodable: list[str] = field(default_factory=list)  # searched as raw bytes only
    leaks: list[str] = field(default_factory=list)

    def look_all(self, where: str, values: Iterable[str | bytes]) -> int:
        """``look`` at many values at once; returns how many. Joined, the values cost one
        search per form (in C) instead of one per form and value; only a hit goes back value
        by value to say where. Keys hold no NUL, so no match can span two values."""
        texts: list[str] = []
        blobs: list[bytes] = []
        for value in values:
            (texts if isinstance(value, str) else blobs).append(value)  # type: ignore[arg-type]
        if texts and self._anywhere("\0".join(texts).encode("utf-8", "surrogatepass")):
            for text in texts:
                self.look(where, text)
        if blobs and self._anywhere(b"\0".join(blobs)):
            for blob in blobs:
                self.look(where, blob)
        return len(texts) + len(blobs)

    def look_arrow(self, where: str, column: pa.ChunkedArray) -> int:
        """``look`` at a column of strings; returns how many values it holds. An Arrow string
        array keeps its values end to end in one buffer, searched as it is; only a hit (which
        may span two values) goes back value by value."""
        for chunk in column.chunks:
            plain = pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)
            data = chunk.buffers()[2] if plain else None
            if data is None or self._anywhere(data.to_pybytes()):
                self.look_all(where, (v for v in chunk.to_pylist() if v is not None))
        return int(len(column) - column.null_count)

    def _anywhere(self, data: bytes) -> bool:
        return any(needle.raw in data for needle in self.needles)

    def look(self, where: str, value: str | bytes) -> None:
        for needle in self.needles:
            at = value.find(needle.raw) if isinstance(value, bytes) else value.find(needle.text)
            if at >= 0:
                # What comes before the key says where it came from, without showing it.
                before = value[max(0, at - 40) : at]
                self.leaks.append(
                    f"key #{needle.key_number} ({needle.form}) in {where}, after {before!r}"
                )


def scan(keys: Iterable[str], places: Iterable[Path], texts: Iterable[str]) -> SecretScan:
    """Search every file under ``places`` and every text for every key."""
    searched = sorted({key for key in keys if key.strip()})
    short = [key for key in searched if len(key.strip()) < MIN_KEY_LENGTH]
    if short:
        raise ValueError(
            f"{len(short)} key(s) under {MIN_KEY_LENGTH} characters were registered: such a "
            "string turns up by chance, so it cannot be searched for; use a realistic key"
        )
    result = SecretScan([n for i, key in enumerate(searched, 1) for n in needles(key, i)])
    result.keys = len(searched)
    for number, text in enumerate(texts, 1):
        result.texts += 1
        result.look(f"text #{number}", text)
    for path in files_under(places):
        result.files += 1
        _scan_file(result, path)
    return result


def files_under(places: Iterable[Path]) -> list[Path]:
    """Each file once: the places that are files, and every file below those that are folders."""
    seen: dict[Path, None] = {}
    for place in places:
        if place.is_file():
            seen.setdefault(place.resolve(), None)
        elif place.is_dir():
            for path in sorted(place.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    seen.setdefault(path.resolve(), None)
    return list(seen)


def _scan_file(result: SecretScan, path: Path) -> None:
    try:
        data = path.read_bytes()
    except OSError:
        return  # removed while the walk ran (a temporary file)
    result.look(str(path), data)
    try:
        if data.startswith(SQLITE_MAGIC):
            result.values += _scan_sqlite(result, path)
            result.decoded.add("SQLite")
        elif data.startswith(PARQUET_MAGIC) and data.endswith(PARQUET_MAGIC):
            result.values += _scan_parquet(result, path)
            result.decoded.add("Parquet")
        elif data[8:12] == DUCKDB_MAGIC:
            result.values += _scan_duckdb(result, path)
            result.decoded.add("DuckDB")
    except (sqlite3.Error, duckdb.Error, pa.ArrowException, OSError):
        # A torn or deliberately damaged file (the crash and storage tests make them): its raw
        # bytes were searched above.
        result.undecodable.append(str(path))


def _scan_sqlite(result: SecretScan, path: Path) -> int:
    """Every TEXT value of every table, and every BLOB (inflated when it is zlib)."""
    values = 0
    with tempfile.TemporaryDirectory() as tmp:
        # A copy with its WAL: the original is never opened, so nothing of it can change.
        copy = Path(tmp) / path.name
        for suffix in ("", "-wal"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                shutil.copyfile(source, copy.with_name(copy.name + suffix))
        con = sqlite3.connect(copy)
        try:
            tables = [
                row[0] for row in con.execute("select name from sqlite_master where type = 'table'")
            ]
            for table in tables:
                rows = con.execute(f'select * from "{table}"')
                while batch := rows.fetchmany(SQLITE_BATCH_ROWS):
                    values += result.look_all(
                        f"{path} ({table})",
                        (
                            value if isinstance(value, str) else _inflated(value)
                            for row in batch
                            for value in row
                            if isinstance(value, str | bytes)
                        ),
                    )
        finally:
            con.close()
    return values


def _inflated(value: bytes) -> bytes:
    try:
        return value + zlib.decompress(value)
    except zlib.error:
        return value


def _scan_parquet(result: SecretScan, path: Path) -> int:
    """Every string and binary value of every column, nested ones included."""
    table = pq.read_table(path)
    values = 0
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not _holds_strings(column.type):
            continue
        values += result.look_all(f"{path} (column {name})", _strings(column.to_pylist()))
    return values


def _holds_strings(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _holds_strings(kind.value_type)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        return True
    if pa.types.is_large_binary(kind) or pa.types.is_string_view(kind):
        return True
    return any(_holds_strings(kind.field(i).type) for i in range(kind.num_fields))


def _strings(value: Any) -> Iterator[str | bytes]:
    if isinstance(value, str | bytes):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _scan_duckdb(result: SecretScan, path: Path) -> int:
    """Every string-holding column of every table and view, and the views' SQL, read-only."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        values = 0
        for (sql,) in con.execute("select sql from duckdb_views() where not internal").fetchall():
            values += 1
            result.look(f"{path} (a view's SQL)", sql or "")
        columns = con.execute(
            "select table_schema, table_name, column_name, data_type "
            "from information_schema.columns "
            "where table_catalog = current_database() "
            "and table_schema not in ('information_schema', 'pg_catalog')"
        ).fetchall()
        # A query per table or view, its string-holding columns as text: a wide view is a
        # pivot, computed again by every query that reads it.
        strings: dict[tuple[str, str], list[str]] = {}
        for schema, table, column, kind in columns:
            if any(word in kind.upper() for word in STRING_TYPES):
                strings.setdefault((schema, table), []).append(column)
        for (schema, table), names in strings.items():
            select = ", ".join(f'cast("{name}" as varchar) as "{name}"' for name in names)
            try:
                data = con.sql(f'select {select} from "{schema}"."{table}"').to_arrow_table()
            except duckdb.Error:
                # A view that no longer binds (its tables changed); the tables are read anyway.
                result.undecodable.append(f"{path} ({schema}.{table})")
                continue
            for name, column in zip(data.column_names, data.columns, strict=True):
                values += result.look_arrow(f"{path} ({schema}.{table}.{name})", column)
        return values
    finally:
        con.close()


def dagster_texts(instance: dg.DagsterInstance) -> list[str]:
    """What a Dagster instance keeps, as text: every run (config, tags, origin), its job and
    plan snapshots, every event record of it (messages, metadata, errors), the partitions."""
    texts: list[str] = []
    for run in instance.get_runs():
        texts.append(dg.serialize_value(run))
        texts.append(json.dumps(run.run_config, default=str))
        texts.append(json.dumps(run.tags))
        if run.job_snapshot_id:
            texts.append(dg.serialize_value(instance.get_job_snapshot(run.job_snapshot_id)))
        if run.execution_plan_snapshot_id:
            plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            texts.append(dg.serialize_value(plan))
        for record in instance.all_logs(run.run_id):
            texts.append(dg.serialize_value(record))
            texts.append(record.message)
    for name in (BOT_PARTITIONS_NAME, CSV_PARTITIONS_NAME):
        texts.extend(instance.get_dynamic_partitions(name))
    return texts


class LogTexts(logging.Handler):
    """Every record logged anywhere in the process while installed, formatted with its
    traceback, as caplog keeps them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))


@contextmanager
def logs_captured() -> Iterator[LogTexts]:
    root = logging.getLogger()
    handler, level = LogTexts(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
