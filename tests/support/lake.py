"""The Parquet lake: rows built and written as the extraction would (atomically), and read back."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from iozen_etl.settings import DataPaths
from iozen_etl.sync.schemas import LAKE_TABLES
from iozen_etl.warehouse.lake_files import list_lake

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

ALL_FIELD_TYPES = (
    ("full_name", "short_text"),
    ("notes", "long_text"),
    ("email", "email"),
    ("phone", "phone"),
    ("website", "url"),
    ("employees", "number"),
    ("start_date", "date"),
    ("newsletter", "boolean"),
    ("plan", "select"),
    ("topics", "multi_select"),
    ("attachments", "file"),
    ("utm_source", "hidden"),
    ("location", "geolocation"),  # a type the API docs do not list: kept as text
)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def bot_row(
    bot_id: str,
    name: str,
    updated: float = 0,
    *,
    submission_count: int = 0,
    status: str = "ACTIVE",
    created: float = 0,
    synced: float | None = None,
) -> dict[str, Any]:
    return {
        "id": bot_id,
        "name": name,
        "status": status,
        "description": None,
        "share_url": f"{bot_id}-share",
        "submission_count": submission_count,
        "created_at": at(created),
        "updated_at": at(updated),
        "schema_shape": "fields",
        "extra": "{}",
        "synced_at": at(updated + 1 if synced is None else synced),
    }


def field_rows(
    bot_id: str, bot_updated: float, fields: Sequence[tuple[str, str]], *, content_at: int = -1
) -> list[dict[str, Any]]:
    rows = []
    items: list[tuple[str, str | None, bool]] = [(n, t, False) for n, t in fields]
    if content_at >= 0:
        items.insert(content_at, ("intro", None, True))
    for position, (name, field_type, is_content) in enumerate(items):
        rows.append(
            {
                "intake_bot_id": bot_id,
                "position": position,
                "item_id": f"item_{position}",
                "kind": "content" if is_content else "field",
                "is_content": is_content,
                "name": name,
                "label": name.replace("_", " ").title(),
                "type": field_type,
                "required": False,
                "options": ["a", "b", "c"] if field_type in ("select", "multi_select") else [],
                "content_type": "plain" if is_content else None,
                "extra": "{}",
                "bot_updated_at": at(bot_updated),
            }
        )
    return rows


def submission_row(
    submission_id: str,
    bot_id: str,
    updated: float,
    data: Mapping[str, Any],
    *,
    status: str = "COMPLETED",
    is_test: bool = False,
    created: float = 0,
    synced: float | None = None,
) -> dict[str, Any]:
    return {
        "id": submission_id,
        "intake_bot_id": bot_id,
        "status": status,
        "is_test": is_test,
        "ai_summary": None,
        "file_count": 0,
        "message_count": 1,
        "schema_version": 1,
        "created_at": at(created),
        "updated_at": at(updated),
        "data": json.dumps(dict(data), sort_keys=True),
        "extra": "{}",
        "synced_at": at(updated + 1 if synced is None else synced),
    }


def _answer(
    sub: Mapping[str, Any], name: str, position: int, value: Any, is_list: bool
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "submission_id": sub["id"],
        "intake_bot_id": sub["intake_bot_id"],
        "field_name": name,
        "position": position,
        "is_list": is_list,
        "value_kind": "null",
        "text_value": None,
        "number_value": None,
        "boolean_value": None,
        "submission_updated_at": sub["updated_at"],
    }
    if isinstance(value, bool):
        row.update(value_kind="boolean", boolean_value=value)
    elif isinstance(value, int | float):
        row.update(value_kind="number", number_value=float(value))
    elif isinstance(value, str):
        row.update(value_kind="string", text_value=value)
    elif value is not None:
        row.update(value_kind="json", text_value=json.dumps(value, sort_keys=True))
    return row


def answer_rows(subs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Long-form answers, as the normaliser makes them: a list gives one row per item."""
    rows: list[dict[str, Any]] = []
    for sub in subs:
        for name, value in json.loads(sub["data"]).items():
            if isinstance(value, list):
                rows.extend(_answer(sub, name, i, item, True) for i, item in enumerate(value))
            else:
                rows.append(_answer(sub, name, 0, value, False))
    return rows


def webhook_row(
    hook_id: str, updated: float, url: str = "https://example.test/hook"
) -> dict[str, Any]:
    return {
        "id": hook_id,
        "url": url,
        "events": ["submission.completed"],
        "status": "active",
        "description": None,
        "last_delivery_at": None,
        "last_delivery_ok": None,
        "consecutive_fails": 0,
        "created_at": at(0),
        "updated_at": at(updated),
        "extra": "{}",
        "synced_at": at(updated + 1),
    }


def write_lake(
    lake_root: Path,
    table: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    bot_id: str | None = None,
    stem: str = "page-0000",
) -> Path:
    """Write one file atomically (tmp file + fsync + os.replace), as ``sync.lake`` does."""
    folder = lake_root / table
    if bot_id is not None:
        folder = folder / f"bot_id={bot_id}"
    folder.mkdir(parents=True, exist_ok=True)
    data = pa.Table.from_pylist(list(rows), schema=LAKE_TABLES[table])
    target = folder / f"{stem}.parquet"
    tmp = folder / f".{stem}.parquet.tmp"
    pq.write_table(data, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target


def write_submissions(
    lake_root: Path, subs: Sequence[Mapping[str, Any]], *, bot_id: str, stem: str
) -> None:
    """A page of submissions and its answers, as the extractor writes them."""
    write_lake(lake_root, "submissions", subs, bot_id=bot_id, stem=stem)
    write_lake(lake_root, "submission_answers", answer_rows(subs), bot_id=bot_id, stem=stem)


def lake_files(lake_root: Path, table: str) -> list[Path]:
    """The complete Parquet files of one lake table, as the warehouse load lists them."""
    return [lake_root / found.rel_path for found in list_lake(lake_root) if found.table == table]


def read_table(root: Path, table: str) -> pa.Table:
    """Every complete file of a lake table under the data directory ``root``, concatenated."""
    files = lake_files(DataPaths(root).parquet, table)
    if not files:
        return pa.table({})
    return pa.concat_tables(pq.read_table(p) for p in files)


def newest_by_id(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Merge by id, newest ``updated_at`` wins (what the warehouse does)."""
    best: dict[str, dict[str, Any]] = {}
    for row in table.to_pylist():
        held = best.get(row["id"])
        if held is None or row["updated_at"] > held["updated_at"]:
            best[row["id"]] = row
    return best
