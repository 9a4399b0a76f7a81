"""The bot listing: every bot each run, and the detail (schema) of bots whose version moved."""

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pyarrow.parquet as pq

from iozen_etl.api.errors import (
    IozenError,
    WaitCeilingReached,
)
from iozen_etl.api.models import IntakeBot, SchemaItem
from iozen_etl.settings import DEFAULT_CONCURRENCY
from iozen_etl.sync import normalise
from iozen_etl.sync.client import SyncClient, counts_delta, request_counts
from iozen_etl.sync.lake import Lake, stamp
from iozen_etl.sync.reports import BotsReport, SchemaDrift
from iozen_etl.sync.state import (
    SCHEMA_STREAM,
    StateStore,
    utc_now_iso,
)


def _previous_fields(lake: Lake, bot_id: str, bot_updated_at: str) -> dict[str, str | None] | None:
    path = lake.path("intake_bot_fields", bot_id, "v" + stamp(bot_updated_at))
    if not path.exists():
        return None
    table = pq.read_table(path, columns=["name", "type", "is_content"])
    return {
        name: type_
        for name, type_, content in zip(
            table["name"].to_pylist(),
            table["type"].to_pylist(),
            table["is_content"].to_pylist(),
            strict=True,
        )
        if not content
    }


def _drift(
    bot_id: str, before: Mapping[str, str | None], items: Sequence[SchemaItem]
) -> SchemaDrift | None:
    after = {item.name: item.type for item in items if item.kind != "content"}
    drift = SchemaDrift(
        intake_bot_id=bot_id,
        new_fields=tuple(sorted(set(after) - set(before))),
        removed_fields=tuple(sorted(set(before) - set(after))),
        changed_types=tuple(sorted(n for n in after if n in before and before[n] != after[n])),
    )
    if drift.new_fields or drift.removed_fields or drift.changed_types:
        return drift
    return None


def sync_bots(
    client: SyncClient,
    lake: Lake,
    state: StateStore,
    *,
    clock: Callable[[], str] = utc_now_iso,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> BotsReport:
    """List every bot; fetch the detail (schema) of bots whose ``updated_at`` changed.

    Writes the new or changed bots (one file per run, none when nothing changed) and each fetched
    schema (one file per bot version), then records the versions seen.
    """
    started = time.monotonic()
    stats_before = request_counts(client)
    synced_at = clock()
    seen = state.all(SCHEMA_STREAM)
    listed: list[IntakeBot] = []
    stopped = False
    try:
        for page in client.iter_intake_bot_pages():
            listed.extend(page.items)
    except WaitCeilingReached:
        stopped = True
    to_fetch = [
        bot
        for bot in listed
        if bot.id not in seen or seen[bot.id].seen_bot_updated_at != bot.updated_at
    ]
    details: dict[str, IntakeBot] = {}
    errors: list[str] = []
    drifts: list[SchemaDrift] = []
    stop = threading.Event()
    if stopped:
        stop.set()

    def fetch(bot: IntakeBot) -> None:
        if stop.is_set():
            return
        try:
            detail = client.get_intake_bot(bot.id)
        except WaitCeilingReached:
            stop.set()
            return
        except IozenError as error:
            errors.append(f"{bot.id}: {error}")
            return
        try:
            _store_detail(detail)
        except (normalise.NormaliseError, OSError) as error:
            errors.append(f"{bot.id}: {error}")

    def _store_detail(detail: IntakeBot) -> None:
        previous = seen.get(detail.id)
        before = None
        if previous is not None and previous.seen_bot_updated_at is not None:
            before = _previous_fields(lake, detail.id, previous.seen_bot_updated_at)
        lake.write(
            "intake_bot_fields",
            detail.id,
            "v" + stamp(detail.updated_at),
            normalise.bot_fields_table(detail),
        )
        if before is not None:
            drift = _drift(detail.id, before, detail.schema or ())
            if drift is not None:
                drifts.append(drift)
        details[detail.id] = detail

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(fetch, to_fetch))

    changed = [details[bot.id] for bot in to_fetch if bot.id in details]
    # A new submission moves a bot's count but not (always) its updated_at: keep the count
    # current too, with the schema shape of the version already stored.
    recounted = [
        replace(bot, schema_shape=seen[bot.id].bot_schema_shape)
        for bot in listed
        if bot.id in seen
        and bot.id not in details
        and seen[bot.id].seen_bot_updated_at == bot.updated_at
        and seen[bot.id].seen_submission_count != bot.submission_count
    ]
    rows = changed + recounted
    if rows:
        lake.write("intake_bots", None, stamp(synced_at), normalise.bots_table(rows, synced_at))
    for bot in rows:
        state.set_seen(
            SCHEMA_STREAM,
            bot.id,
            bot_updated_at=bot.updated_at,
            submission_count=bot.submission_count,
            schema_shape=bot.schema_shape,
        )
    delta = counts_delta(stats_before, request_counts(client))
    return BotsReport(
        bots=tuple(details.get(bot.id, bot) for bot in listed),
        bots_new=sum(1 for bot in to_fetch if bot.id not in seen),
        bots_changed=sum(1 for bot in to_fetch if bot.id in seen),
        details_fetched=len(details),
        detail_errors=tuple(sorted(errors)),
        schema_drift=tuple(sorted(drifts, key=lambda d: d.intake_bot_id)),
        rows_written=len(rows),
        files_written=(1 if rows else 0) + len(details),
        requests=int(delta.get("requests", 0)),
        throttled=int(delta.get("throttled", 0)),
        seconds_waited=delta.get("seconds_waited", 0.0),
        stopped_by_wait_ceiling=stop.is_set(),
        elapsed_s=time.monotonic() - started,
    )
