"""The sync engine (no Dagster): bots, then submissions per bot, into the lake, resumable.

Order of every batch of up to ``PAGES_PER_FILE`` consecutive pages of a bot: fetch each ->
normalise them together -> write their two Parquet files (atomic, and durable together:
``Lake.write_many``) -> commit the resume point after the last of them in SQLite. A resume
point therefore only ever moves past pages whose files are on disk. A sync killed (or a machine
that loses power) between any two steps resumes from the last committed resume point and
rewrites, under the same file names, whatever it had written after it; SQLite's
``synchronous=NORMAL`` may lose the last commits on a power cut, which only sends the resume
point back to an earlier durable one. A stream that ends, fails or is stopped first writes the
pages it has read.

Per bot, a run does the least that keeps the lake right (DECISIONS.md #5-#7):
- nothing at all when the bot's ``submission_count`` and ``updated_at`` are what the last finished
  scan saw, and it holds no ``IN_PROGRESS`` submissions (only the refresh below when it does);
- otherwise the live stream from its resume point to the end, then a bounded refresh of the
  submissions stored as ``IN_PROGRESS`` (one GET each, least recently checked first);
- a rescan from the start (separate resume point, new file generation) for a full refresh, after
  a page out of order, and while one is unfinished; the live resume point only moves forward, to
  where the rescan ended;
- a rejected resume point: the last committed batch is read again from the cursor it started
  at, and if that is rejected too, the live stream itself starts over.

Reports carry counts, ids, field names and resume points, never answer values.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeAlias

import pyarrow.parquet as pq

from iozen_etl.api.errors import (
    FeatureNotAvailable,
    InsufficientScopes,
    IozenError,
    ResourceNotFound,
    ValidationFailed,
    WaitCeilingReached,
)
from iozen_etl.api.models import IntakeBot, Page, SchemaItem, Submission, Webhook
from iozen_etl.settings import DEFAULT_IN_PROGRESS_REFRESH_LIMIT
from iozen_etl.sync import normalise
from iozen_etl.sync.lake import Lake
from iozen_etl.sync.refresh import RefreshPlan, plan_refreshes
from iozen_etl.sync.state import (
    RESCAN_STREAM,
    SCHEMA_STREAM,
    SUBMISSIONS_STREAM,
    WEBHOOKS_STREAM,
    InProgress,
    StateStore,
    StreamState,
    TrackedPage,
    utc_now_iso,
)

IN_PROGRESS = "IN_PROGRESS"
DEFAULT_CONCURRENCY = 8
# Pages of a bot written as one lake file per table (1,000 submissions): fewer, larger files
# cost less to write (one Parquet encoding, one fsync round and one state commit per file) and
# far less to load; a crash re-reads at most this many pages.
PAGES_PER_FILE = 10
# Every report's count of lake files it wrote: the warehouse has work only when one is above 0.
LAKE_FILES_KEY = "lake_files_written"


class SyncClient(Protocol):
    """The part of ``IozenClient`` the engine uses."""

    def iter_intake_bot_pages(
        self, resume_point: str | None = None
    ) -> Iterable[Page[IntakeBot]]: ...
    def get_intake_bot(self, bot_id: str) -> IntakeBot: ...
    def iter_submission_pages(
        self, bot_id: str, resume_point: str | None = None
    ) -> Iterable[Page[Submission]]: ...
    def get_submission(self, bot_id: str, submission_id: str) -> Submission: ...
    def iter_webhook_pages(self, resume_point: str | None = None) -> Iterable[Page[Webhook]]: ...
    @property
    def stats(self) -> Any: ...


def _stats(client: SyncClient) -> dict[str, float]:
    snapshot = client.stats.snapshot()
    return {key: float(value) for key, value in snapshot.items() if isinstance(value, int | float)}


def _stats_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}


def data_digest(data: Mapping[str, Any]) -> str:
    """A short digest of a submission's answers: tells a same-second change of an IN_PROGRESS
    submission from no change, without keeping the answers themselves in the state file."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _compact(iso: str) -> str:
    """``2026-02-22T11:00:00.000Z`` -> ``20260222T110000000Z``: a readable file-name part."""
    return re.sub(r"[^0-9A-Za-z]", "", iso)


# -- bots ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaDrift:
    """How a bot's schema changed since the last stored version (field names only)."""

    intake_bot_id: str
    new_fields: tuple[str, ...]
    removed_fields: tuple[str, ...]
    changed_types: tuple[str, ...]


@dataclass(frozen=True)
class BotsReport:
    bots: tuple[IntakeBot, ...]  # listing records, replaced by the detail when it was fetched
    bots_new: int
    bots_changed: int
    details_fetched: int
    detail_errors: tuple[str, ...]  # "bot id: error" (ids and request ids only)
    schema_drift: tuple[SchemaDrift, ...]
    rows_written: int
    files_written: int  # lake files: the bots file and one schema file per fetched detail
    requests: int
    throttled: int
    seconds_waited: float
    stopped_by_wait_ceiling: bool
    elapsed_s: float

    def metadata(self) -> dict[str, int | float | str]:
        return {
            "bots_seen": len(self.bots),
            LAKE_FILES_KEY: self.files_written,
            "bots_new": self.bots_new,
            "bots_changed": self.bots_changed,
            "details_fetched": self.details_fetched,
            "detail_errors": len(self.detail_errors),
            "schema_drift_bots": len(self.schema_drift),
            "dagster/row_count": self.rows_written,
            "requests": self.requests,
            "throttled_429": self.throttled,
            "seconds_waited": round(self.seconds_waited, 3),
            "stopped_by_wait_ceiling": str(self.stopped_by_wait_ceiling),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _previous_fields(lake: Lake, bot_id: str, bot_updated_at: str) -> dict[str, str | None] | None:
    path = lake.path("intake_bot_fields", bot_id, "v" + _compact(bot_updated_at))
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
    stats_before = _stats(client)
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
            "v" + _compact(detail.updated_at),
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
        lake.write("intake_bots", None, _compact(synced_at), normalise.bots_table(rows, synced_at))
    for bot in rows:
        state.set_seen(
            SCHEMA_STREAM,
            bot.id,
            bot_updated_at=bot.updated_at,
            submission_count=bot.submission_count,
            schema_shape=bot.schema_shape,
        )
    delta = _stats_delta(stats_before, _stats(client))
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


# -- submissions --------------------------------------------------------------------------


@dataclass(frozen=True)
class BotSubmissionsReport:
    """What one run did for one bot. ``requests`` counts the engine's calls (pages and GETs);
    retries, 429s and waits are counted run-wide in ``SubmissionsReport``."""

    intake_bot_id: str
    # "skipped", "synced", "failed", "stopped" (wait ceiling), or "missing": asked for but not in
    # the bot listing (deleted in ioZen, or no longer visible to this key); its rows stay.
    action: str
    intake_bot_name: str = ""
    pages: int = 0
    requests: int = 0
    rows_new: int = 0  # rows read by the live stream past its resume point
    rows_rescanned: int = 0  # rows read again by a rescan
    refreshed: int = 0  # IN_PROGRESS submissions read again
    refresh_updated: int = 0  # ... stored again: updated_at, status or answers had moved
    refresh_completed: int = 0  # ... that are no longer IN_PROGRESS
    refresh_missing: int = 0  # ... that the API no longer has (404)
    rows_reread: int = 0  # rows before the resume point read again to refresh IN_PROGRESS ones
    in_progress_unchecked: int = 0  # IN_PROGRESS rows the run's budget left for a later run
    refresh_fallback: bool = False  # the page re-read's cursor was refused: GETs instead
    resume_point_before: str | None = None
    resume_point_after: str | None = None
    rescan: str | None = None  # why a rescan ran: full_refresh, cursor_rejected, out_of_order
    rescan_finished: bool = False
    # the stored resume point was rejected and the last page was read again from its start
    resume_fallback: bool = False
    files_written: int = 0  # lake files (one per table per batch of pages)
    last_submission_at: str | None = None  # newest created_at among the rows this run read
    unknown_answer_fields: tuple[str, ...] = ()  # answer names not in the bot's schema
    type_mismatch_fields: tuple[str, ...] = ()  # answers whose kind does not fit the field type
    error: str | None = None

    @property
    def rows_written(self) -> int:
        """Rows this run wrote to the lake for the bot."""
        return self.rows_new + self.rows_rescanned + self.refresh_updated

    @property
    def changed(self) -> bool:
        """The bot's data moved in this run: a page was read (its count or version had moved,
        a first sync, a rescan), or a refresh stored rows again or found rows gone."""
        return self.action == "synced" and (
            self.pages > 0 or self.refresh_updated > 0 or self.refresh_missing > 0
        )


@dataclass(frozen=True)
class SubmissionsReport:
    bots: tuple[BotSubmissionsReport, ...]
    requests: int
    throttled: int
    retries: int
    seconds_waited: float
    stopped_by_wait_ceiling: bool
    wait_ceiling_error: str | None
    elapsed_s: float

    def count(self, action: str) -> int:
        return sum(1 for bot in self.bots if bot.action == action)

    def total(self, name: str) -> int:
        return sum(int(getattr(bot, name)) for bot in self.bots)

    @property
    def resume_points_moved(self) -> int:
        return sum(
            1
            for bot in self.bots
            if bot.action != "skipped" and bot.resume_point_before != bot.resume_point_after
        )

    def metadata(self) -> dict[str, int | float | str]:
        rows = sum(bot.rows_written for bot in self.bots)
        return {
            "bots_seen": len(self.bots),
            "bots_skipped": self.count("skipped"),
            "bots_synced": self.count("synced"),
            "bots_changed": sum(1 for bot in self.bots if bot.changed),
            "bots_failed": self.count("failed"),
            "bots_stopped": self.count("stopped"),
            "bots_missing": self.count("missing"),
            "bots_rescanned": sum(1 for bot in self.bots if bot.rescan),
            "pages": self.total("pages"),
            "requests": self.requests,
            "retries": self.retries,
            "throttled_429": self.throttled,
            "seconds_waited": round(self.seconds_waited, 3),
            "rows_new": self.total("rows_new"),
            "rows_rescanned": self.total("rows_rescanned"),
            "rows_updated": self.total("refresh_updated"),
            LAKE_FILES_KEY: self.total("files_written"),
            "in_progress_refreshed": self.total("refreshed"),
            "in_progress_completed": self.total("refresh_completed"),
            "in_progress_unchecked": self.total("in_progress_unchecked"),
            "rows_reread": self.total("rows_reread"),
            "resume_points_moved": self.resume_points_moved,
            "schema_drift_bots": sum(
                1 for bot in self.bots if bot.unknown_answer_fields or bot.type_mismatch_fields
            ),
            "dagster/row_count": rows,
            "stopped_by_wait_ceiling": str(self.stopped_by_wait_ceiling),
            "elapsed_s": round(self.elapsed_s, 3),
        }


class _Stop(Exception):
    """Raised inside a bot's sync when the run is stopping (another bot hit the wait ceiling)."""


class _CursorRejected(Exception):
    """The server refused a resume point; names the stream and cursor (never answer values)."""

    def __init__(self, stream: str, bot_id: str, cursor: str, rejected: ValidationFailed) -> None:
        super().__init__(
            f"{stream} of bot {bot_id}: cursor {cursor!r} rejected "
            f"(request id {rejected.request_id})"
        )


# Answer kinds that fit a field type; types not listed accept anything (kept as text).
_FITTING_KINDS: dict[str, frozenset[str]] = {
    "number": frozenset({"number", "null"}),
    "boolean": frozenset({"boolean", "null"}),
    "short_text": frozenset({"string", "null"}),
    "long_text": frozenset({"string", "null"}),
    "text": frozenset({"string", "null"}),
    "email": frozenset({"string", "null"}),
    "phone": frozenset({"string", "null"}),
    "url": frozenset({"string", "null"}),
    "date": frozenset({"string", "null"}),
    "select": frozenset({"string", "null"}),
    "multi_select": frozenset({"string", "null"}),
}


@dataclass
class _BotRun:
    """Mutable tally of one bot's sync, frozen into a BotSubmissionsReport at the end."""

    bot: IntakeBot
    pages: int = 0
    requests: int = 0
    rows_new: int = 0
    rows_rescanned: int = 0
    refreshed: int = 0
    refresh_updated: int = 0
    refresh_completed: int = 0
    refresh_missing: int = 0
    rows_reread: int = 0
    reread_unseen: int = 0
    refresh_fallback: bool = False
    files_written: int = 0
    last_submission_at: str | None = None
    rescan: str | None = None
    rescan_finished: bool = False
    resume_fallback: bool = False
    unknown_fields: set[str] = field(default_factory=set)
    mismatched_fields: set[str] = field(default_factory=set)

    def saw(self, items: Sequence[Submission]) -> None:
        """Keep the newest ``created_at`` read (same-shaped UTC stamps sort as text)."""
        newest = max((sub.created_at for sub in items), default=None)
        if newest is not None and (self.last_submission_at or "") < newest:
            self.last_submission_at = newest


# Where a scan starts: a cursor (None: the beginning) and the submissions before it (None: unknown).
_Start: TypeAlias = tuple[str | None, int | None]


def _recheck(
    run: _BotRun, sub: Submission, stored_updated_at: str, stored_digest: str | None
) -> tuple[bool, InProgress | None]:
    """Whether a submission read again differs from the stored row, and its IN_PROGRESS
    entry (None once it is no longer IN_PROGRESS)."""
    run.refreshed += 1
    digest = data_digest(sub.data)
    # Without milliseconds on the wire, a change within the same second leaves updated_at
    # as it was: the status and the answers say whether the stored row is stale (the
    # warehouse breaks equal-updated_at ties by synced_at, so storing it again wins).
    differs = (
        sub.updated_at != stored_updated_at or sub.status != IN_PROGRESS or digest != stored_digest
    )
    if differs:
        run.refresh_updated += 1
    if sub.status == IN_PROGRESS:
        return differs, (sub.id, sub.updated_at, digest)
    run.refresh_completed += 1
    return differs, None


@dataclass
class _Reread:
    """IN_PROGRESS rows checked while pages are read again for them."""

    until: int | None  # the old resume point's position: rows before it are read again
    stored: dict[str, tuple[str, str | None, int | None]]  # id -> updated_at, digest, position
    seen: set[str] = field(default_factory=set)

    def count(self, run: _BotRun, items: Sequence[Submission], position: int | None) -> int:
        """Check the IN_PROGRESS rows among ``items`` (read after ``position`` submissions);
        how many of ``items`` sit before the old resume point."""
        before = 0
        if self.until is not None and position is not None:
            before = max(0, min(len(items), self.until - position))
        run.rows_reread += before
        for sub in items:
            stored = self.stored.get(sub.id)
            if stored is not None:
                self.seen.add(sub.id)
                _recheck(run, sub, stored[0], stored[1])
        return before

    def unseen_after(self, position: int) -> int:
        """Stored rows read from at or after ``position`` that the pages did not show."""
        return sum(
            1
            for sid, (_, _, at) in self.stored.items()
            if at is not None and at >= position and sid not in self.seen
        )


@dataclass
class _Rechecked:
    """IN_PROGRESS rows read again outside the live stream, sorted by what comes of them."""

    fresh: list[Submission] = field(default_factory=list)  # moved: stored again
    still: list[InProgress] = field(default_factory=list)  # still IN_PROGRESS
    done: list[str] = field(default_factory=list)  # no longer IN_PROGRESS, or gone

    def add(
        self, run: _BotRun, sub: Submission, stored_updated_at: str, stored_digest: str | None
    ) -> None:
        differs, tracked = _recheck(run, sub, stored_updated_at, stored_digest)
        if differs:
            self.fresh.append(sub)
        if tracked is not None:
            self.still.append(tracked)
        else:
            self.done.append(sub.id)


@dataclass
class _Scan:
    """Where one pass over a bot's submissions ended."""

    end_point: str | None
    in_order: bool
    reached_end: bool


class _Engine:
    def __init__(
        self,
        client: SyncClient,
        lake: Lake,
        state: StateStore,
        *,
        synced_at: str,
        refresh_budget: int,
    ) -> None:
        self.client = client
        self.lake = lake
        self.state = state
        self.synced_at = synced_at
        self.stop = threading.Event()
        self.ceiling_error: str | None = None
        self._budget = refresh_budget
        self._budget_lock = threading.Lock()

    def take_refresh_budget(self, wanted: int) -> int:
        with self._budget_lock:
            granted = min(wanted, self._budget)
            self._budget -= granted
            return granted

    def sync_bot(
        self, bot: IntakeBot, *, full_refresh: bool, refresh: RefreshPlan | None
    ) -> BotSubmissionsReport:
        live = self.state.get(SUBMISSIONS_STREAM, bot.id)
        rescan = self.state.get(RESCAN_STREAM, bot.id)
        before = live.resume_point if live else None
        # A bot flagged out_of_order is still skipped while unchanged: nothing new was added.
        unchanged = (
            live is not None
            and live.seen_submission_count == bot.submission_count
            and live.seen_bot_updated_at == bot.updated_at
        )
        unchecked = refresh.unchecked if refresh is not None else 0
        rereads = refresh is not None and refresh.pages_from is not None
        gets = refresh.gets if refresh is not None else 0
        if unchanged and not rereads and not gets and rescan is None and not full_refresh:
            return BotSubmissionsReport(
                bot.id,
                "skipped",
                bot.name,
                resume_point_before=before,
                resume_point_after=before,
                in_progress_unchecked=unchecked,
            )
        run = _BotRun(bot)
        action = "synced"
        error: str | None = None
        reread = refresh.pages_from if refresh is not None else None
        try:
            if not unchanged or rescan is not None or full_refresh:
                self._sync_streams(run, live, rescan, full_refresh=full_refresh, reread=reread)
            elif reread is not None:
                # Unchanged: its pages are read again for the IN_PROGRESS rows, nothing else.
                self._reread_pages(run, reread)
            if run.refresh_fallback and refresh is not None:
                gets += self.take_refresh_budget(refresh.pages_covered)
            # Rows the pages should have shown and did not (deleted, or moved): asked one by one.
            gets += self.take_refresh_budget(run.reread_unseen)
            self._refresh_in_progress(run, gets)
        except (_Stop, WaitCeilingReached) as stop:
            if isinstance(stop, WaitCeilingReached):
                self.ceiling_error = self.ceiling_error or str(stop)
            self.stop.set()
            action = "stopped"
        except (IozenError, normalise.NormaliseError, OSError, _CursorRejected) as failure:
            # _CursorRejected here: even the scan from the start had a cursor refused (cursors
            # that expire faster than this bot can be read); the other bots go on.
            action, error = "failed", str(failure)
        after = self.state.get(SUBMISSIONS_STREAM, bot.id)
        return BotSubmissionsReport(
            intake_bot_id=bot.id,
            action=action,
            intake_bot_name=bot.name,
            pages=run.pages,
            requests=run.requests,
            rows_new=run.rows_new,
            rows_rescanned=run.rows_rescanned,
            refreshed=run.refreshed,
            refresh_updated=run.refresh_updated,
            refresh_completed=run.refresh_completed,
            refresh_missing=run.refresh_missing,
            rows_reread=run.rows_reread,
            in_progress_unchecked=unchecked,
            refresh_fallback=run.refresh_fallback,
            files_written=run.files_written,
            last_submission_at=run.last_submission_at,
            resume_point_before=before,
            resume_point_after=after.resume_point if after else None,
            rescan=run.rescan,
            rescan_finished=run.rescan_finished,
            resume_fallback=run.resume_fallback,
            unknown_answer_fields=tuple(sorted(run.unknown_fields)),
            type_mismatch_fields=tuple(sorted(run.mismatched_fields)),
            error=error,
        )

    def _sync_streams(
        self,
        run: _BotRun,
        live: StreamState | None,
        rescan: StreamState | None,
        *,
        full_refresh: bool,
        reread: TrackedPage | None,
    ) -> None:
        bot = run.bot
        generation = live.scan_generation if live else 0
        reason = None
        if rescan is not None:
            reason = rescan.needs_rescan or "unfinished"
        elif full_refresh:
            reason = "full_refresh"
        elif live is not None and live.needs_rescan is not None:
            reason = live.needs_rescan
        if rescan is None and reason is not None and live is not None:
            generation += 1
            self.state.start_scan(RESCAN_STREAM, bot.id, reason=reason, generation=generation)
            rescan = self.state.get(RESCAN_STREAM, bot.id)
        if rescan is not None:
            self._rescan(run, rescan, reason or "unfinished")
            return
        # The live stream, from its resume point (a first sync starts at the beginning), or from
        # an earlier page start when IN_PROGRESS rows sit there: one pass reads both.
        scan: _Scan | None = None
        start: _Start = (live.resume_point, live.position) if live else (None, 0)
        if reread is not None and live is not None:
            try:
                scan = self._reread_scan(run, reread, generation, until=live.position)
                start = (reread.start, reread.position)
            except _CursorRejected:
                run.refresh_fallback = True  # one GET each instead, after the live stream
        if scan is None:
            scan, start, generation = self._scan_or_restart(
                run, SUBMISSIONS_STREAM, start, generation, rescanning=False
            )
        if not scan.reached_end:
            return
        ordered_from_start = scan.in_order or start[0] is None
        self.state.complete_scan(
            bot.id,
            submission_count=bot.submission_count,
            bot_updated_at=bot.updated_at,
            resume_point=scan.end_point,
            needs_rescan=None if scan.in_order else "out_of_order",
            generation=generation,
        )
        if start[0] is None and run.rescan == "cursor_rejected":
            run.rescan_finished = True
        if not ordered_from_start:
            # Items may sit before the resume point we trusted: read the bot again from the start.
            generation += 1
            self.state.start_scan(
                RESCAN_STREAM, bot.id, reason="out_of_order", generation=generation
            )
            rescan = self.state.get(RESCAN_STREAM, bot.id)
            assert rescan is not None
            self._rescan(run, rescan, "out_of_order")

    def _rescan(self, run: _BotRun, rescan: StreamState, reason: str) -> None:
        bot = run.bot
        run.rescan = reason
        generation = rescan.scan_generation
        start: _Start = (rescan.resume_point, rescan.position)
        scan, _, generation = self._scan_or_restart(
            run, RESCAN_STREAM, start, generation, rescanning=True
        )
        if not scan.reached_end:
            return
        self.state.finish_rescan(
            bot.id,
            submission_count=bot.submission_count,
            bot_updated_at=bot.updated_at,
            resume_point=scan.end_point,
            needs_rescan=None if scan.in_order else "out_of_order",
            generation=generation,
        )
        run.rescan_finished = True

    def _scan_or_restart(
        self,
        run: _BotRun,
        stream: str,
        start: _Start,
        generation: int,
        *,
        rescanning: bool,
    ) -> tuple[_Scan, _Start, int]:
        """Scan from ``start``; when the server rejects the resume point, read the last committed
        page again from where it began (its cursor was accepted once), and only if that is
        rejected too, start the stream over under a new generation (DECISIONS.md #6).

        Returns the scan, where it really started, and the generation it wrote.
        """
        bot_id = run.bot.id
        try:
            scan = self._scan(run, stream, start, generation, rescanning=rescanning)
            return scan, start, generation
        except _CursorRejected:
            row = self.state.get(stream, bot_id)
            fallback: _Start = (row.page_start, row.page_start_position) if row else (None, 0)
        run.resume_fallback = True
        try:
            scan = self._scan(run, stream, fallback, generation, rescanning=rescanning)
            return scan, fallback, generation
        except _CursorRejected:
            pass
        if run.rescan is None:
            run.rescan = "cursor_rejected"
        generation += 1
        self.state.start_scan(stream, bot_id, reason=None, generation=generation)
        scan = self._scan(run, stream, (None, 0), generation, rescanning=True)
        return scan, (None, 0), generation

    def _pages(self, run: _BotRun, start: str | None) -> Iterator[Page[Submission]]:
        """The bot's pages from ``start``, each request counted when it is made (the client's
        last look that finds no further page is not one)."""
        pages = iter(self.client.iter_submission_pages(run.bot.id, resume_point=start))
        while True:
            run.requests += 1
            try:
                page = next(pages)
            except StopIteration:
                run.requests -= 1
                return
            yield page

    def _scan(
        self,
        run: _BotRun,
        stream: str,
        start: _Start,
        generation: int,
        *,
        rescanning: bool,
        reread: _Reread | None = None,
    ) -> _Scan:
        """Read ``stream`` from ``start`` (a cursor and the submissions before it) to the end,
        writing and committing its pages ten to a file. With ``reread``, the rows before the
        old resume point are counted as read again and the IN_PROGRESS ones checked."""
        bot_id = run.bot.id
        point, position = start
        in_order = True
        pages = self._pages(run, point)
        # Pages read but not yet in the lake: written together, as one file per table, once they
        # hold PAGES_PER_FILE pages, at the end of the stream, or before an interruption is
        # passed on (what was read is kept). The resume point moves only past written pages.
        unwritten: list[Page[Submission]] = []
        unwritten_start = start
        while True:
            if self.stop.is_set():
                self._store_pages(run, stream, unwritten, unwritten_start, generation)
                raise _Stop
            try:
                page = next(pages)
            except StopIteration:
                self._store_pages(run, stream, unwritten, unwritten_start, generation)
                return _Scan(point, in_order, reached_end=True)
            except IozenError as failure:
                self._store_pages(run, stream, unwritten, unwritten_start, generation)
                if (
                    isinstance(failure, ValidationFailed)
                    and failure.is_cursor_error
                    and point is not None
                ):
                    raise _CursorRejected(stream, bot_id, point, failure) from failure
                raise
            unwritten.append(page)
            run.pages += 1
            run.saw(page.items)
            reread_here = reread.count(run, page.items, position) if reread is not None else 0
            if rescanning:
                run.rows_rescanned += len(page.items)
            else:
                run.rows_new += len(page.items) - reread_here
            in_order = in_order and page.in_order
            point = page.resume_point
            position = None if position is None else position + len(page.items)
            if len(unwritten) >= PAGES_PER_FILE:
                self._store_pages(run, stream, unwritten, unwritten_start, generation)
                unwritten, unwritten_start = [], (point, position)

    def _store_pages(
        self,
        run: _BotRun,
        stream: str,
        pages: Sequence[Page[Submission]],
        start: _Start,
        generation: int,
    ) -> None:
        """Write consecutive pages that began at ``start`` durably, then move the resume point
        past the last of them (with their IN_PROGRESS bookkeeping) in one state transaction."""
        if not pages:
            return
        bot_id = run.bot.id
        cursor, position = start
        subs = [sub for page in pages for sub in page.items]
        if subs:
            stem = f"{generation:05d}-{cursor if cursor is not None else 'start'}"
            self._write_page(run, bot_id, stem, subs, pages[-1].schema)
        self.state.commit_pages(
            stream,
            bot_id,
            pages[-1].resume_point,
            len(subs),
            page_start=cursor,
            start_position=position,
            pages=len(pages),
            in_progress=[
                (s.id, s.updated_at, data_digest(s.data)) for s in subs if s.status == IN_PROGRESS
            ],
            not_in_progress=[s.id for s in subs if s.status != IN_PROGRESS],
        )

    def _write_page(
        self,
        run: _BotRun,
        bot_id: str,
        stem: str,
        subs: Sequence[Submission],
        page_schema: Sequence[SchemaItem] | None,
    ) -> None:
        """Both files of some pages, made durable together (one fsync round for the pair)."""
        submissions, answers, answer_kinds = normalise.page_tables(subs, self.synced_at)
        self._check_drift(run, page_schema, answer_kinds)
        self.lake.write_many(
            [
                ("submission_answers", bot_id, stem, answers),
                ("submissions", bot_id, stem, submissions),
            ]
        )
        run.files_written += 2

    def _check_drift(
        self,
        run: _BotRun,
        page_schema: Sequence[SchemaItem] | None,
        answer_kinds: Collection[tuple[str, str]],
    ) -> None:
        schema = page_schema if page_schema is not None else run.bot.schema
        if schema is None or not answer_kinds:
            return
        types = {item.name: item.type for item in schema if item.kind != "content"}
        for name, kind in answer_kinds:
            if name not in types:
                run.unknown_fields.add(name)
                continue
            fitting = _FITTING_KINDS.get(types[name] or "")
            if fitting is not None and kind not in fitting:
                run.mismatched_fields.add(name)

    def _reread_scan(
        self, run: _BotRun, page: TrackedPage, generation: int, *, until: int | None
    ) -> _Scan:
        """The live stream from an earlier page start that holds IN_PROGRESS rows."""
        reread = _Reread(until, self.state.in_progress_details(run.bot.id))
        scan = self._scan(
            run,
            SUBMISSIONS_STREAM,
            (page.start, page.position),
            generation,
            rescanning=False,
            reread=reread,
        )
        if scan.reached_end:
            run.reread_unseen = reread.unseen_after(page.position)
        return scan

    def _reread_pages(self, run: _BotRun, page: TrackedPage) -> None:
        """Read an unchanged bot's pages from ``page`` to the end to check its IN_PROGRESS rows;
        store again only the rows that moved (its resume point and files stay as they are)."""
        bot_id = run.bot.id
        if self.stop.is_set():
            raise _Stop
        reread = _Reread(None, self.state.in_progress_details(bot_id))
        rechecked = _Rechecked()
        try:
            for read in self._pages(run, page.start):
                run.rows_reread += len(read.items)
                for sub in read.items:
                    stored = reread.stored.get(sub.id)
                    if stored is None:
                        continue
                    reread.seen.add(sub.id)
                    rechecked.add(run, sub, stored[0], stored[1])
                if self.stop.is_set():
                    break
            else:
                run.reread_unseen = reread.unseen_after(page.position)
        except ValidationFailed as failure:
            if not (failure.is_cursor_error and page.start is not None and not reread.seen):
                raise
            run.refresh_fallback = True  # the page start expired: one GET each instead
        finally:
            self._store_rechecked(run, rechecked)
        if self.stop.is_set():
            raise _Stop

    def _refresh_in_progress(self, run: _BotRun, count: int) -> None:
        """Read again, one GET each, up to ``count`` submissions kept as IN_PROGRESS, least
        recently checked first (pages read by this run were just checked)."""
        if count <= 0:
            return
        bot_id = run.bot.id
        rechecked = _Rechecked()
        try:
            for submission_id, stored_updated_at, stored_digest in self.state.in_progress(
                bot_id, count
            ):
                if self.stop.is_set():
                    break
                run.requests += 1
                try:
                    sub = self.client.get_submission(bot_id, submission_id)
                except ResourceNotFound:
                    run.refresh_missing += 1
                    rechecked.done.append(submission_id)
                    continue
                if sub.message_count is None and sub.messages is not None:
                    # The detail carries the messages but not their count, which the list sends.
                    sub = replace(sub, message_count=len(sub.messages))
                rechecked.add(run, sub, stored_updated_at, stored_digest)
        finally:
            self._store_rechecked(run, rechecked)
        if self.stop.is_set():
            raise _Stop

    def _store_rechecked(self, run: _BotRun, rechecked: _Rechecked) -> None:
        """The rows that moved into one refresh file, then the IN_PROGRESS bookkeeping."""
        if rechecked.fresh:
            stem = f"refresh-{_compact(self.synced_at)}"
            self._write_page(run, run.bot.id, stem, rechecked.fresh, None)
        if rechecked.still or rechecked.done:
            self.state.track_in_progress(run.bot.id, rechecked.still, rechecked.done)


def sync_submissions(
    client: SyncClient,
    lake: Lake,
    state: StateStore,
    bots: Sequence[IntakeBot] | None = None,
    *,
    only_bots: Collection[str] | None = None,
    full_refresh: Collection[str] = frozenset(),
    concurrency: int = DEFAULT_CONCURRENCY,
    in_progress_refresh_limit: int = DEFAULT_IN_PROGRESS_REFRESH_LIMIT,
    progress: Callable[[BotSubmissionsReport], None] | None = None,
    clock: Callable[[], str] = utc_now_iso,
) -> SubmissionsReport:
    """Sync the submissions of ``bots`` (listed anew when None), several bots at a time.

    ``only_bots`` limits the run to those ids; ``full_refresh`` rescans those bots from the start
    without moving their live resume point backwards. A ``WaitCeilingReached`` stops the run
    cleanly (every committed page kept) and is reported in ``stopped_by_wait_ceiling``.
    """
    started = time.monotonic()
    stats_before = _stats(client)
    synced_at = clock()
    ceiling_error: str | None = None
    reports: list[BotSubmissionsReport] = []
    if bots is None:
        listed: list[IntakeBot] = []
        try:
            for page in client.iter_intake_bot_pages():
                listed.extend(page.items)
        except WaitCeilingReached as error:
            ceiling_error = str(error)
        bots = listed
    wanted = [bot for bot in bots if only_bots is None or bot.id in only_bots]
    listed_ids = {bot.id for bot in bots}
    for unknown in sorted(set(only_bots or ()) - listed_ids):
        reports.append(BotSubmissionsReport(unknown, "missing"))
    refresh = frozenset(full_refresh)
    plans, budget_left = plan_refreshes(wanted, state, in_progress_refresh_limit, rescanned=refresh)
    engine = _Engine(client, lake, state, synced_at=synced_at, refresh_budget=budget_left)
    if ceiling_error is not None:
        engine.stop.set()
        engine.ceiling_error = ceiling_error
    lock = threading.Lock()

    def one(bot: IntakeBot) -> None:
        if engine.stop.is_set():
            report = BotSubmissionsReport(bot.id, "stopped", bot.name)
        else:
            report = engine.sync_bot(bot, full_refresh=bot.id in refresh, refresh=plans.get(bot.id))
        with lock:
            reports.append(report)
        if progress is not None:
            progress(report)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for _ in pool.map(one, wanted):
            pass
    delta = _stats_delta(stats_before, _stats(client))
    order = {bot.id: index for index, bot in enumerate(wanted)}
    return SubmissionsReport(
        bots=tuple(sorted(reports, key=lambda r: order.get(r.intake_bot_id, -1))),
        requests=int(delta.get("requests", 0)),
        throttled=int(delta.get("throttled", 0)),
        retries=int(delta.get("retries", 0)),
        seconds_waited=delta.get("seconds_waited", 0.0),
        stopped_by_wait_ceiling=engine.ceiling_error is not None,
        wait_ceiling_error=engine.ceiling_error,
        elapsed_s=time.monotonic() - started,
    )


# -- webhooks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhooksReport:
    webhooks: int
    skipped: str | None  # why nothing was read (e.g. the plan has no webhooks)
    requests: int
    elapsed_s: float
    files_written: int = 0  # 1 when the list differed from the last snapshot, else 0

    def metadata(self) -> dict[str, int | float | str]:
        return {
            "webhooks": self.webhooks,
            "dagster/row_count": self.webhooks,
            LAKE_FILES_KEY: self.files_written,
            "skipped": self.skipped or "",
            "requests": self.requests,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def sync_webhooks(
    client: SyncClient,
    lake: Lake,
    state: StateStore,
    *,
    clock: Callable[[], str] = utc_now_iso,
) -> WebhooksReport:
    """List every webhook endpoint; write the list as one snapshot file, empty or not, when it
    differs from the last one written (secrets are never listed)."""
    started = time.monotonic()
    stats_before = _stats(client)
    synced_at = clock()
    hooks: list[Webhook] = []
    try:
        for page in client.iter_webhook_pages():
            hooks.extend(page.items)
    except (FeatureNotAvailable, InsufficientScopes) as refused:
        delta = _stats_delta(stats_before, _stats(client))
        return WebhooksReport(
            0, refused.code, int(delta.get("requests", 0)), time.monotonic() - started
        )
    digest = _webhooks_digest(hooks)
    last = state.get(WEBHOOKS_STREAM)
    changed = last is None or last.bot_schema_shape != digest
    if changed:
        # Written even when empty: the file is the whole list at synced_at, so an empty one says
        # every endpoint is gone (the warehouse replaces the table with the newest snapshot).
        table = normalise.webhooks_table(hooks, synced_at)
        lake.write("webhooks", None, _compact(synced_at), table)
    # Recorded every run: the stream's completed_at says when the API was last read.
    state.set_seen(
        WEBHOOKS_STREAM,
        "",
        bot_updated_at=synced_at,
        submission_count=len(hooks),
        schema_shape=digest,
    )
    delta = _stats_delta(stats_before, _stats(client))
    return WebhooksReport(
        len(hooks),
        None,
        int(delta.get("requests", 0)),
        time.monotonic() - started,
        files_written=1 if changed else 0,
    )


def _webhooks_digest(hooks: Sequence[Webhook]) -> str:
    """What the snapshot file would hold, short: an unchanged list writes no new file."""
    text = repr(sorted(hooks, key=lambda hook: hook.id))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
