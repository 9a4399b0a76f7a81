"""Shared by the engine tests: a client on fake time, the lake read back, the sandbox's truth."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from iozen_etl.api import IozenClient, RetryPolicy
from iozen_etl.sandbox import Sandbox, sandbox_transport
from iozen_etl.settings import DataPaths
from iozen_etl.sync.bots import sync_bots
from iozen_etl.sync.lake import Lake
from iozen_etl.sync.reports import BotsReport, SubmissionsReport
from iozen_etl.sync.state import StateStore
from iozen_etl.sync.submissions import sync_submissions
from iozen_etl.warehouse.lake_files import list_lake


class FakeTime:
    """Monotonic and wall clocks that only move when something sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)


def make_client(
    sandbox: Sandbox,
    *,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    api_key: str | None = None,
) -> IozenClient:
    time = FakeTime()
    return IozenClient(
        api_key or sandbox.api_key,
        "http://sandbox.test/api/v1",
        transport=transport or sandbox_transport(sandbox),
        retry=retry,
        clock=time.clock,
        wall_clock=time.wall,
        sleep=time.sleep,
    )


class Workspace:
    """A data directory plus the engine's lake and state over it."""

    def __init__(self, root: Path) -> None:
        self.paths = DataPaths(root)
        self.lake = Lake(self.paths.parquet)

    def sync(
        self,
        client: IozenClient,
        **options: Any,
    ) -> tuple[BotsReport, SubmissionsReport]:
        with StateStore(self.paths.state_db) as state:
            bots = sync_bots(client, self.lake, state)
            subs = sync_submissions(client, self.lake, state, bots.bots, **options)
        return bots, subs


def lake_files(lake_root: Path, table: str) -> list[Path]:
    """The complete Parquet files of one lake table, as the warehouse load lists them."""
    return [lake_root / found.rel_path for found in list_lake(lake_root) if found.table == table]


def read_table(root: Path, table: str) -> pa.Table:
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


def _ts(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)


def lake_submissions(root: Path) -> dict[str, tuple[Any, ...]]:
    rows = newest_by_id(read_table(root, "submissions"))
    return {
        sid: (
            row["intake_bot_id"],
            row["status"],
            row["updated_at"],
            json.loads(row["data"]),
            row["message_count"],
        )
        for sid, row in rows.items()
    }


def truth_submissions(sandbox: Sandbox) -> dict[str, tuple[Any, ...]]:
    return {
        s["id"]: (
            s["intake_bot_id"],
            s["status"],
            _ts(s["updated_at"]),
            s["data"],
            s["message_count"],
        )
        for s in sandbox.truth_submissions()
    }


def assert_lake_matches_truth(root: Path, sandbox: Sandbox) -> None:
    lake = lake_submissions(root)
    truth = truth_submissions(sandbox)
    missing = sorted(set(truth) - set(lake))
    extra = sorted(set(lake) - set(truth))
    assert not missing, f"{len(missing)} submissions missing from the lake, e.g. {missing[:3]}"
    assert not extra, f"{len(extra)} submissions in the lake the API does not have"
    wrong = [sid for sid in truth if lake[sid] != truth[sid]]
    assert not wrong, f"{len(wrong)} submissions differ from the truth, e.g. {wrong[:3]}"
    # The long-form answers at each submission's newest version name exactly its answers.
    newest = {sid: row[2] for sid, row in lake.items()}
    names: dict[str, set[tuple[str, int]]] = {sid: set() for sid in lake}
    for row in read_table(root, "submission_answers").to_pylist():
        if row["submission_updated_at"] == newest[row["submission_id"]]:
            names[row["submission_id"]].add((row["field_name"], row["position"]))
    for sid, (_, _, _, data, _) in truth.items():
        expected = {
            (name, position)
            for name, value in data.items()
            for position in range(len(value) if isinstance(value, list) else 1)
        }
        assert names[sid] == expected, f"answers of {sid} do not match its data"


def rewrite_json(
    inner: httpx.BaseTransport,
    on_request: Callable[[httpx.Request], httpx.Request] | None = None,
    on_response: Callable[[httpx.Request, Any], Any] | None = None,
) -> httpx.MockTransport:
    """Wrap a transport, editing requests and the parsed JSON of answers (fake at the transport)."""

    def handle(request: httpx.Request) -> httpx.Response:
        if on_request is not None:
            request = on_request(request)
        response = inner.handle_request(request)
        if on_response is None or response.status_code >= 300:
            return response
        body = on_response(request, json.loads(response.read()))
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return httpx.Response(response.status_code, headers=headers, json=body, request=request)

    return httpx.MockTransport(handle)


def in_progress_counts(state: StateStore) -> dict[str, int]:
    """IN_PROGRESS submissions tracked per bot."""
    return {bot: count for bot, (count, _) in state.in_progress_oldest_checks().items()}
