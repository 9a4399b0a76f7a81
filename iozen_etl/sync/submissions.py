"""The submissions engine (no Dagster): each bot's submissions into the lake, resumable.

Order of every batch of up to ``PAGES_PER_FILE`` consecutive pages of a bot: fetch each ->
normalise them together -> write their two Parquet files (atomic, and durable together:
``Lake.write_many``) -> commit the resume point after the last of them in SQLite. A resume
point therefore only ever moves past pages whose files are on disk. A sync killed (or a machine
that loses power) between any two steps resumes from the last committed resume point and
rewrites, under the same file names, whatever it had written after it; SQLite's
``synchronous=NORMAL`` may lose the last commits on a power cut, which only sends the resume
point back to an earlier durable one. A stream that ends, fails or is stopped first writes the
pages it has read.

Per bot, a run does the least that keeps the lake right (docs/decisions.md, part 2, "Sync"):
- nothing at all when the bot's ``submission_count`` and ``updated_at`` are what the last finished
  scan saw, and it holds no ``IN_PROGRESS`` submissions (only the refresh below when it does);
- otherwise the live stream from its resume point to the end; the ``IN_PROGRESS`` rows are read
  again in pages or one GET each, as ``refresh.plan_refreshes`` chose;
- a rescan from the start (separate resume point, new file generation) for a full refresh, after
  a page out of order, and while one is unfinished; the live resume point only moves forward, to
  where the rescan ended;
- a rejected resume point: the last committed batch is read again from the cursor it started
  at, and if that is rejected too, the live stream itself starts over.

One class holds the scan, its fallbacks and the IN_PROGRESS re-reads because they share one
bot's resume-point bookkeeping; which is why this module runs past 400 lines.

Reports carry counts, ids, field names and resume points, never answer values.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeAlias

from iozen_etl.api.errors import (
    IozenError,
    ResourceNotFound,
    ValidationFailed,
    WaitCeilingReached,
)
from iozen_etl.api.models import IntakeBot, Page, SchemaItem, Submission
from iozen_etl.settings import DEFAULT_CONCURRENCY, DEFAULT_IN_PROGRESS_REFRESH_LIMIT
from iozen_etl.sync import normalise
from iozen_etl.sync.bot_run import IN_PROGRESS, BotRun, Rechecked, Reread, data_digest
from iozen_etl.sync.bots import list_bots
from iozen_etl.sync.client import SyncClient, counts_delta, fetch_submission, request_counts
from iozen_etl.sync.lake import Lake, stamp
from iozen_etl.sync.refresh import RefreshPlan, plan_refreshes
from iozen_etl.sync.reports import BotSubmissionsReport, SubmissionsReport
from iozen_etl.sync.state import (
    RESCAN_STREAM,
    SUBMISSIONS_STREAM,
    StateStore,
    StreamState,
    TrackedPage,
    utc_now_iso,
)

# Pages of a bot written as one lake file per table (1,000 submissions): fewer, larger files
# cost less to write (one Parquet encoding, one fsync round and one state commit per file) and
# far less to load; a crash re-reads at most this many pages.
PAGES_PER_FILE = 10


class _Stop(Exception):
    """Raised inside a bot's sync when the run is stopping (another bot hit the wait ceiling)."""


class _CursorRejected(Exception):
    """The server refused a resume point; names the stream and cursor (never answer values)."""

    def __init__(self, stream: str, bot_id: str, cursor: str, rejected: ValidationFailed) -> None:
        super().__init__(
            f"{stream} of bot {bot_id}: cursor {cursor!r} rejected "
            f"(request id {rejected.request_id})"
        )


# Where a scan starts: a cursor (None: the beginning) and the submissions before it (None: unknown).
_Start: TypeAlias = tuple[str | None, int | None]


@dataclass
class _Scan:
    """Where one pass over a bot's submissions ended."""

    end_point: str | None
    in_order: bool
    reached_end: bool


def _unchanged(bot: IntakeBot, live: StreamState | None) -> bool:
    """The bot's count and version are what the last finished scan saw."""
    return (
        live is not None
        and live.seen_submission_count == bot.submission_count
        and live.seen_bot_updated_at == bot.updated_at
    )


def _rescan_reason(
    live: StreamState | None, rescan: StreamState | None, *, full_refresh: bool
) -> str | None:
    """Why the bot is read again from the start in this run, or None when it is not."""
    if rescan is not None:
        return rescan.needs_rescan or "unfinished"
    if full_refresh:
        return "full_refresh"
    if live is not None:
        return live.needs_rescan
    return None


@dataclass
class _Batch:
    """Pages of one stream read but not yet in the lake, and where the first began: written
    together, as one file per table, once they hold PAGES_PER_FILE pages, at the end of the
    stream, or before an interruption is passed on. The resume point moves only past written
    pages."""

    stream: str
    generation: int
    start: _Start
    pages: list[Page[Submission]] = field(default_factory=list)


def _tally(
    run: BotRun,
    items: Sequence[Submission],
    position: int | None,
    *,
    rescanning: bool,
    reread: Reread | None,
) -> None:
    """Count a page read at ``position`` as new, rescanned or read again."""
    run.pages += 1
    run.saw(items)
    reread_here = reread.count(run, items, position) if reread is not None else 0
    if rescanning:
        run.rows_rescanned += len(items)
    else:
        run.rows_new += len(items) - reread_here


class _Engine:
    """One run over many bots: what their threads share (the stop flag, the refresh budget)."""

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

    def stop_at_ceiling(self, error: str) -> None:
        """Stop every bot's sync: the rate budget's wait ceiling was reached."""
        self.ceiling_error = self.ceiling_error or error
        self.stop.set()

    def sync_bot(
        self, bot: IntakeBot, *, full_refresh: bool, refresh: RefreshPlan | None
    ) -> BotSubmissionsReport:
        """One bot's submissions: skipped when nothing can have moved, else read and reported."""
        live = self.state.get(SUBMISSIONS_STREAM, bot.id)
        rescan = self.state.get(RESCAN_STREAM, bot.id)
        before = live.resume_point if live else None
        unchecked = refresh.unchecked if refresh is not None else 0
        # A bot flagged out_of_order is still skipped while unchanged: nothing new was added.
        streams_due = not _unchanged(bot, live) or rescan is not None or full_refresh
        if not streams_due and (refresh is None or not refresh.reads):
            return BotSubmissionsReport(
                bot.id,
                "skipped",
                bot.name,
                resume_point_before=before,
                resume_point_after=before,
                in_progress_unchecked=unchecked,
            )
        run = BotRun(bot)
        action, error = self._read_bot(
            run, live, rescan, streams_due=streams_due, full_refresh=full_refresh, refresh=refresh
        )
        after = self.state.get(SUBMISSIONS_STREAM, bot.id)
        return run.report(
            action,
            error,
            resume_point_before=before,
            resume_point_after=after.resume_point if after else None,
            in_progress_unchecked=unchecked,
        )

    def _read_bot(
        self,
        run: BotRun,
        live: StreamState | None,
        rescan: StreamState | None,
        *,
        streams_due: bool,
        full_refresh: bool,
        refresh: RefreshPlan | None,
    ) -> tuple[str, str | None]:
        """Read the bot's streams (or only its pages holding IN_PROGRESS rows), then GET the
        IN_PROGRESS rows the pages did not cover; the action and error to report."""
        reread = refresh.pages_from if refresh is not None else None
        try:
            if streams_due:
                self._sync_streams(run, live, rescan, full_refresh=full_refresh, reread=reread)
            elif reread is not None:
                # Unchanged: its pages are read again for the IN_PROGRESS rows, nothing else.
                self._reread_pages(run, reread)
            self._refresh_in_progress(run, self._gets_funded(run, refresh))
        except (_Stop, WaitCeilingReached) as stop:
            if isinstance(stop, WaitCeilingReached):
                self.stop_at_ceiling(str(stop))
            else:
                self.stop.set()
            return "stopped", None
        except (IozenError, normalise.NormaliseError, OSError, _CursorRejected) as failure:
            # _CursorRejected here: even the scan from the start had a cursor refused (cursors
            # that expire faster than this bot can be read); the other bots go on.
            return "failed", str(failure)
        return "synced", None

    def _gets_funded(self, run: BotRun, refresh: RefreshPlan | None) -> int:
        """GETs for the IN_PROGRESS rows: the plan's, those a refused page re-read was to cover,
        and the rows the pages should have shown and did not (deleted, or moved)."""
        gets = refresh.gets if refresh is not None else 0
        if run.refresh_fallback and refresh is not None:
            gets += self.take_refresh_budget(refresh.pages_covered)
        return gets + self.take_refresh_budget(run.reread_unseen)

    def _sync_streams(
        self,
        run: BotRun,
        live: StreamState | None,
        rescan: StreamState | None,
        *,
        full_refresh: bool,
        reread: TrackedPage | None,
    ) -> None:
        reason = _rescan_reason(live, rescan, full_refresh=full_refresh)
        generation = live.scan_generation if live else 0
        if rescan is None and reason is not None and live is not None:
            generation += 1
            rescan = self._start_rescan(run.bot.id, reason, generation)
        if rescan is not None:
            self._rescan(run, rescan, reason or "unfinished")
            return
        scan, start, generation = self._live_scan(run, live, reread, generation)
        if scan.reached_end:
            self._finish_live_scan(run, scan, start, generation)

    def _start_rescan(self, bot_id: str, reason: str, generation: int) -> StreamState:
        self.state.start_scan(RESCAN_STREAM, bot_id, reason=reason, generation=generation)
        rescan = self.state.get(RESCAN_STREAM, bot_id)
        assert rescan is not None
        return rescan

    def _live_scan(
        self, run: BotRun, live: StreamState | None, reread: TrackedPage | None, generation: int
    ) -> tuple[_Scan, _Start, int]:
        """The live stream, from its resume point (a first sync starts at the beginning), or from
        an earlier page start when IN_PROGRESS rows sit there: one pass reads both.

        Returns the scan, where it really started, and the generation it wrote."""
        start: _Start = (live.resume_point, live.position) if live else (None, 0)
        if reread is not None and live is not None:
            try:
                scan = self._reread_scan(run, reread, generation, until=live.position)
                return scan, (reread.start, reread.position), generation
            except _CursorRejected:
                run.refresh_fallback = True  # one GET each instead, after the live stream
        return self._scan_or_restart(run, SUBMISSIONS_STREAM, start, generation, rescanning=False)

    def _finish_live_scan(self, run: BotRun, scan: _Scan, start: _Start, generation: int) -> None:
        """Record a live scan that reached the end; rescan the bot when its order was not kept."""
        bot = run.bot
        self.state.complete_scan(
            bot.id,
            submission_count=bot.submission_count,
            bot_updated_at=bot.updated_at,
            resume_point=scan.end_point,
            needs_rescan=None if scan.in_order else "out_of_order",
            generation=generation,
        )
        from_start = start[0] is None
        if from_start and run.rescan == "cursor_rejected":
            run.rescan_finished = True
        if not (scan.in_order or from_start):
            # Items may sit before the resume point we trusted: read the bot again from the start.
            rescan = self._start_rescan(bot.id, "out_of_order", generation + 1)
            self._rescan(run, rescan, "out_of_order")

    def _rescan(self, run: BotRun, rescan: StreamState, reason: str) -> None:
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
        run: BotRun,
        stream: str,
        start: _Start,
        generation: int,
        *,
        rescanning: bool,
    ) -> tuple[_Scan, _Start, int]:
        """Scan from ``start``; when the server rejects the resume point, read the last committed
        page again from where it began (its cursor was accepted once), and only if that is
        rejected too, start the stream over under a new generation (docs/decisions.md #6).

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

    def _pages(self, run: BotRun, start: str | None) -> Iterator[Page[Submission]]:
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
        run: BotRun,
        stream: str,
        start: _Start,
        generation: int,
        *,
        rescanning: bool,
        reread: Reread | None = None,
    ) -> _Scan:
        """Read ``stream`` from ``start`` (a cursor and the submissions before it) to the end,
        writing and committing its pages ten to a file. With ``reread``, the rows before the
        old resume point are counted as read again and the IN_PROGRESS ones checked."""
        point, position = start
        in_order = True
        pages = self._pages(run, point)
        batch = _Batch(stream, generation, start)
        while True:
            page = self._next_page(run, pages, batch, point)
            if page is None:
                return _Scan(point, in_order, reached_end=True)
            batch.pages.append(page)
            _tally(run, page.items, position, rescanning=rescanning, reread=reread)
            in_order = in_order and page.in_order
            point = page.resume_point
            position = None if position is None else position + len(page.items)
            if len(batch.pages) >= PAGES_PER_FILE:
                self._store_pages(run, batch)
                batch = _Batch(stream, generation, (point, position))

    def _next_page(
        self,
        run: BotRun,
        pages: Iterator[Page[Submission]],
        batch: _Batch,
        point: str | None,
    ) -> Page[Submission] | None:
        """The next page of the stream, None at its end. At the end, or before a stop or a
        failure is passed on, the pages of ``batch`` are stored first (what was read is kept)."""
        if self.stop.is_set():
            self._store_pages(run, batch)
            raise _Stop
        try:
            return next(pages)
        except StopIteration:
            self._store_pages(run, batch)
            return None
        except IozenError as failure:
            self._store_pages(run, batch)
            if (
                isinstance(failure, ValidationFailed)
                and failure.is_cursor_error
                and point is not None
            ):
                raise _CursorRejected(batch.stream, run.bot.id, point, failure) from failure
            raise

    def _store_pages(self, run: BotRun, batch: _Batch) -> None:
        """Write the batch's pages durably, then move the resume point past the last of them
        (with their IN_PROGRESS bookkeeping) in one state transaction."""
        pages = batch.pages
        if not pages:
            return
        bot_id = run.bot.id
        cursor, position = batch.start
        subs = [sub for page in pages for sub in page.items]
        if subs:
            stem = f"{batch.generation:05d}-{cursor if cursor is not None else 'start'}"
            self._write_page(run, bot_id, stem, subs, pages[-1].schema)
        self.state.commit_pages(
            batch.stream,
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
        run: BotRun,
        bot_id: str,
        stem: str,
        subs: Sequence[Submission],
        page_schema: Sequence[SchemaItem] | None,
    ) -> None:
        """Both files of some pages, made durable together (one fsync round for the pair)."""
        submissions, answers, answer_kinds = normalise.page_tables(subs, self.synced_at)
        run.check_answer_kinds(page_schema, answer_kinds)
        self.lake.write_many(
            [
                ("submission_answers", bot_id, stem, answers),
                ("submissions", bot_id, stem, submissions),
            ]
        )
        run.files_written += 2

    def _reread_scan(
        self, run: BotRun, page: TrackedPage, generation: int, *, until: int | None
    ) -> _Scan:
        """The live stream from an earlier page start that holds IN_PROGRESS rows."""
        reread = Reread(until, self.state.in_progress_details(run.bot.id))
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

    def _reread_pages(self, run: BotRun, page: TrackedPage) -> None:
        """Read an unchanged bot's pages from ``page`` to the end to check its IN_PROGRESS rows;
        store again only the rows that moved (its resume point and files stay as they are)."""
        bot_id = run.bot.id
        if self.stop.is_set():
            raise _Stop
        reread = Reread(None, self.state.in_progress_details(bot_id))
        rechecked = Rechecked()
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

    def _refresh_in_progress(self, run: BotRun, count: int) -> None:
        """Read again, one GET each, up to ``count`` submissions kept as IN_PROGRESS, least
        recently checked first (pages read by this run were just checked)."""
        if count <= 0:
            return
        bot_id = run.bot.id
        rechecked = Rechecked()
        try:
            for submission_id, stored_updated_at, stored_digest in self.state.in_progress(
                bot_id, count
            ):
                if self.stop.is_set():
                    break
                run.requests += 1
                try:
                    sub = fetch_submission(self.client, bot_id, submission_id)
                except ResourceNotFound:
                    run.refresh_missing += 1
                    rechecked.done.append(submission_id)
                    continue
                rechecked.add(run, sub, stored_updated_at, stored_digest)
        finally:
            self._store_rechecked(run, rechecked)
        if self.stop.is_set():
            raise _Stop

    def _store_rechecked(self, run: BotRun, rechecked: Rechecked) -> None:
        """The rows that moved into one refresh file, then the IN_PROGRESS bookkeeping."""
        if rechecked.fresh:
            stem = f"refresh-{stamp(self.synced_at)}"
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
    stats_before = request_counts(client)
    synced_at = clock()
    ceiling: WaitCeilingReached | None = None
    if bots is None:
        bots, ceiling = list_bots(client)
    wanted = [bot for bot in bots if only_bots is None or bot.id in only_bots]
    listed_ids = {bot.id for bot in bots}
    missing = [
        BotSubmissionsReport(unknown, "missing")
        for unknown in sorted(set(only_bots or ()) - listed_ids)
    ]
    refresh = frozenset(full_refresh)
    plans, budget_left = plan_refreshes(wanted, state, in_progress_refresh_limit, rescanned=refresh)
    engine = _Engine(client, lake, state, synced_at=synced_at, refresh_budget=budget_left)
    if ceiling is not None:
        engine.stop_at_ceiling(str(ceiling))
    synced = _sync_each(engine, wanted, plans, refresh, concurrency=concurrency, progress=progress)
    delta = counts_delta(stats_before, request_counts(client))
    return SubmissionsReport(
        bots=(*missing, *synced),
        requests=int(delta.get("requests", 0)),
        throttled=int(delta.get("throttled", 0)),
        retries=int(delta.get("retries", 0)),
        seconds_waited=delta.get("seconds_waited", 0.0),
        stopped_by_wait_ceiling=engine.ceiling_error is not None,
        wait_ceiling_error=engine.ceiling_error,
        elapsed_s=time.monotonic() - started,
    )


def _sync_each(
    engine: _Engine,
    bots: Sequence[IntakeBot],
    plans: Mapping[str, RefreshPlan],
    full_refresh: frozenset[str],
    *,
    concurrency: int,
    progress: Callable[[BotSubmissionsReport], None] | None,
) -> list[BotSubmissionsReport]:
    """Each bot's sync, ``concurrency`` at a time; the reports in the order of ``bots``."""

    def one(bot: IntakeBot) -> BotSubmissionsReport:
        if engine.stop.is_set():
            report = BotSubmissionsReport(bot.id, "stopped", bot.name)
        else:
            plan = plans.get(bot.id)
            report = engine.sync_bot(bot, full_refresh=bot.id in full_refresh, refresh=plan)
        if progress is not None:
            progress(report)
        return report

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, bots))
