"""One bot's run: its tally, and the checks on what it read (IN_PROGRESS rows read again, answer
kinds against the bot's schema)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from iozen_etl.api.models import IntakeBot, SchemaItem, Submission
from iozen_etl.sync.reports import BotSubmissionsReport
from iozen_etl.sync.state import InProgress

IN_PROGRESS = "IN_PROGRESS"


def data_digest(data: Mapping[str, Any]) -> str:
    """A short digest of a submission's answers: tells a same-second change of an IN_PROGRESS
    submission from no change, without keeping the answers themselves in the state file."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


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
class BotRun:
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

    def report(
        self,
        action: str,
        error: str | None,
        *,
        resume_point_before: str | None,
        resume_point_after: str | None,
        in_progress_unchecked: int,
    ) -> BotSubmissionsReport:
        """The tally, frozen, with what only the caller knows."""
        return BotSubmissionsReport(
            intake_bot_id=self.bot.id,
            action=action,
            intake_bot_name=self.bot.name,
            pages=self.pages,
            requests=self.requests,
            rows_new=self.rows_new,
            rows_rescanned=self.rows_rescanned,
            refreshed=self.refreshed,
            refresh_updated=self.refresh_updated,
            refresh_completed=self.refresh_completed,
            refresh_missing=self.refresh_missing,
            rows_reread=self.rows_reread,
            in_progress_unchecked=in_progress_unchecked,
            refresh_fallback=self.refresh_fallback,
            files_written=self.files_written,
            last_submission_at=self.last_submission_at,
            resume_point_before=resume_point_before,
            resume_point_after=resume_point_after,
            rescan=self.rescan,
            rescan_finished=self.rescan_finished,
            resume_fallback=self.resume_fallback,
            unknown_answer_fields=tuple(sorted(self.unknown_fields)),
            type_mismatch_fields=tuple(sorted(self.mismatched_fields)),
            error=error,
        )

    def check_answer_kinds(
        self, page_schema: Sequence[SchemaItem] | None, answer_kinds: Collection[tuple[str, str]]
    ) -> None:
        """Note answer names the bot's schema lacks, and answers whose kind does not fit their
        field's type (the page's own schema when it sent one, else the bot's)."""
        schema = page_schema if page_schema is not None else self.bot.schema
        if schema is None or not answer_kinds:
            return
        types = {item.name: item.type for item in schema if item.kind != "content"}
        for name, kind in answer_kinds:
            if name not in types:
                self.unknown_fields.add(name)
                continue
            fitting = _FITTING_KINDS.get(types[name] or "")
            if fitting is not None and kind not in fitting:
                self.mismatched_fields.add(name)


def recheck(
    run: BotRun, sub: Submission, stored_updated_at: str, stored_digest: str | None
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
class Reread:
    """IN_PROGRESS rows checked while pages are read again for them."""

    until: int | None  # the old resume point's position: rows before it are read again
    stored: dict[str, tuple[str, str | None, int | None]]  # id -> updated_at, digest, position
    seen: set[str] = field(default_factory=set)

    def count(self, run: BotRun, items: Sequence[Submission], position: int | None) -> int:
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
                recheck(run, sub, stored[0], stored[1])
        return before

    def unseen_after(self, position: int) -> int:
        """Stored rows read from at or after ``position`` that the pages did not show."""
        return sum(
            1
            for sid, (_, _, at) in self.stored.items()
            if at is not None and at >= position and sid not in self.seen
        )


@dataclass
class Rechecked:
    """IN_PROGRESS rows read again outside the live stream, sorted by what comes of them."""

    fresh: list[Submission] = field(default_factory=list)  # moved: stored again
    still: list[InProgress] = field(default_factory=list)  # still IN_PROGRESS
    done: list[str] = field(default_factory=list)  # no longer IN_PROGRESS, or gone

    def add(
        self, run: BotRun, sub: Submission, stored_updated_at: str, stored_digest: str | None
    ) -> None:
        differs, tracked = recheck(run, sub, stored_updated_at, stored_digest)
        if differs:
            self.fresh.append(sub)
        if tracked is not None:
            self.still.append(tracked)
        else:
            self.done.append(sub.id)
