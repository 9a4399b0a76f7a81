"""What each sync step did, as plain records: counts, ids, field names and resume points, never
answer values. The pipeline turns them into Dagster metadata (``pipeline/reporting.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from iozen_etl.api.models import IntakeBot


@dataclass(frozen=True)
class BotsReport:
    bots: tuple[IntakeBot, ...]  # listing records, replaced by the detail when it was fetched
    bots_new: int
    bots_changed: int
    details_fetched: int
    detail_errors: tuple[str, ...]  # "bot id: error" (ids and request ids only)
    rows_written: int
    files_written: int  # lake files: the changed bots and the fetched schemas, one file each
    requests: int
    throttled: int
    seconds_waited: float
    stopped_by_wait_ceiling: bool
    elapsed_s: float
    # What stopped it at the wait ceiling: the method, path and request id of the last try.
    wait_ceiling_error: str | None = None


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


@dataclass(frozen=True)
class WebhooksReport:
    webhooks: int
    skipped: str | None  # why nothing was read (e.g. the plan has no webhooks)
    requests: int
    elapsed_s: float
    files_written: int = 0  # 1 when the list differed from the last snapshot, else 0
