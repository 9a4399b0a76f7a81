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
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
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
from iozen_etl.sync.client import SyncClient, counts_delta, request_counts
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
        run = BotRun(bot)
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
        run: BotRun,
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
        run: BotRun,
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
            self._storerechecked(run, rechecked)
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
            self._storerechecked(run, rechecked)
        if self.stop.is_set():
            raise _Stop

    def _storerechecked(self, run: BotRun, rechecked: Rechecked) -> None:
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
    ceiling_error: str | None = None
    reports: list[BotSubmissionsReport] = []
    if bots is None:
        bots, ceiling = list_bots(client)
        ceiling_error = str(ceiling) if ceiling is not None else None
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
    delta = counts_delta(stats_before, request_counts(client))
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
