"""The bot listing: every bot each run, and the detail (schema) of bots whose version moved.

A run writes at most two lake files, whatever the number of bots: the new or changed bots
(``intake_bots/<synced_at>.parquet``) and the schemas of the details it fetched
(``intake_bot_fields/<synced_at>.parquet``), then records the versions it saw. Schema drift is
the warehouse's check (it keeps the schema a bot had before), not this step's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import pyarrow as pa

from iozen_etl.api.errors import IozenError, WaitCeilingReached
from iozen_etl.api.models import IntakeBot
from iozen_etl.settings import DEFAULT_CONCURRENCY
from iozen_etl.sync import normalise
from iozen_etl.sync.client import SyncClient, counts_delta, request_counts
from iozen_etl.sync.lake import Lake, stamp
from iozen_etl.sync.reports import BotsReport
from iozen_etl.sync.state import SCHEMA_STREAM, StateStore, StreamState, utc_now_iso


@dataclass
class _Details:
    """The details fetched by a run's threads: each bot's schema rows, or why it failed."""

    bots: dict[str, IntakeBot] = field(default_factory=dict)
    fields: list[pa.Table] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "bot id: error" (ids and request ids)
    stop: threading.Event = field(default_factory=threading.Event)
    ceiling: str | None = None  # the first wait ceiling reached, which stopped the others
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self, client: SyncClient, bot: IntakeBot) -> None:
        if self.stop.is_set():
            return
        try:
            detail = client.get_intake_bot(bot.id)
            rows = normalise.bot_fields_table(detail)
        except WaitCeilingReached as ceiling:
            with self.lock:
                self.ceiling = self.ceiling or str(ceiling)
            self.stop.set()
            return
        except (IozenError, normalise.NormaliseError) as error:
            with self.lock:
                self.errors.append(f"{bot.id}: {error}")
            return
        with self.lock:
            self.bots[detail.id] = detail
            self.fields.append(rows)


def list_bots(client: SyncClient) -> tuple[list[IntakeBot], WaitCeilingReached | None]:
    """Every bot the key can see, and the wait ceiling that stopped the listing, if one did
    (the bots listed before it are kept)."""
    listed: list[IntakeBot] = []
    try:
        for page in client.iter_intake_bot_pages():
            listed.extend(page.items)
    except WaitCeilingReached as ceiling:
        return listed, ceiling
    return listed, None


def _recounted(
    listed: Sequence[IntakeBot], seen: dict[str, StreamState], fetched: dict[str, IntakeBot]
) -> list[IntakeBot]:
    """Bots whose version is the stored one but whose submission count moved: a new submission
    moves the count, not always ``updated_at``. They keep the schema shape already stored."""
    return [
        replace(bot, schema_shape=seen[bot.id].bot_schema_shape)
        for bot in listed
        if bot.id in seen
        and bot.id not in fetched
        and seen[bot.id].seen_bot_updated_at == bot.updated_at
        and seen[bot.id].seen_submission_count != bot.submission_count
    ]


def sync_bots(
    client: SyncClient,
    lake: Lake,
    state: StateStore,
    *,
    clock: Callable[[], str] = utc_now_iso,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> BotsReport:
    """List every bot; fetch the detail (schema) of bots whose ``updated_at`` changed; write the
    changed bots and the fetched schemas (one file each, none when nothing changed); then record
    the versions seen, so a run that dies before the files are written fetches them again."""
    started = time.monotonic()
    stats_before = request_counts(client)
    synced_at = clock()
    seen = state.all(SCHEMA_STREAM)
    listed, ceiling = list_bots(client)
    to_fetch = [
        bot
        for bot in listed
        if bot.id not in seen or seen[bot.id].seen_bot_updated_at != bot.updated_at
    ]
    details = _fetch_details(client, to_fetch, stopped=ceiling is not None, concurrency=concurrency)
    changed = [details.bots[bot.id] for bot in to_fetch if bot.id in details.bots]
    rows = changed + _recounted(listed, seen, details.bots)
    files_written = _write_bots(lake, synced_at, rows, details.fields)
    _record_seen(state, rows)
    delta = counts_delta(stats_before, request_counts(client))
    return BotsReport(
        bots=tuple(details.bots.get(bot.id, bot) for bot in listed),
        bots_new=sum(1 for bot in to_fetch if bot.id not in seen),
        bots_changed=sum(1 for bot in to_fetch if bot.id in seen),
        details_fetched=len(details.bots),
        detail_errors=tuple(sorted(details.errors)),
        rows_written=len(rows),
        files_written=files_written,
        requests=int(delta.get("requests", 0)),
        throttled=int(delta.get("throttled", 0)),
        seconds_waited=delta.get("seconds_waited", 0.0),
        stopped_by_wait_ceiling=details.stop.is_set(),
        elapsed_s=time.monotonic() - started,
        wait_ceiling_error=str(ceiling) if ceiling is not None else details.ceiling,
    )


def _fetch_details(
    client: SyncClient, bots: Sequence[IntakeBot], *, stopped: bool, concurrency: int
) -> _Details:
    """The details of ``bots``, ``concurrency`` at a time (none once ``stopped``)."""
    details = _Details()
    if stopped:
        details.stop.set()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(lambda bot: details.fetch(client, bot), bots))
    return details


def _write_bots(
    lake: Lake, synced_at: str, rows: Sequence[IntakeBot], fields: Sequence[pa.Table]
) -> int:
    """The fetched schemas and the bots' rows, one file each (none when empty); files written."""
    files = []
    if fields:
        files.append(("intake_bot_fields", None, stamp(synced_at), pa.concat_tables(fields)))
    if rows:
        files.append(("intake_bots", None, stamp(synced_at), normalise.bots_table(rows, synced_at)))
    lake.write_many(files)
    return len(files)


def _record_seen(state: StateStore, bots: Sequence[IntakeBot]) -> None:
    for bot in bots:
        state.set_seen(
            SCHEMA_STREAM,
            bot.id,
            bot_updated_at=bot.updated_at,
            submission_count=bot.submission_count,
            schema_shape=bot.schema_shape,
        )
