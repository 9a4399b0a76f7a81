"""Which IN_PROGRESS submissions a run reads again, and how: in pages, or one GET each.

A submission stored as ``IN_PROGRESS`` may be completed or edited later without its bot's count
or ``updated_at`` moving, so each run reads such submissions again (docs/decisions.md, "Sync").
Two ways cost requests differently: re-reading the bot's pages from the first page start
that holds one of them (one request per 100 submissions, all of them at once), or one GET per
submission. Per bot the plan takes whichever costs fewer requests; a bot whose submissions
are read anyway (its live stream moves) pays only for the pages before its resume point.

The run's budget (``IOZEN_IN_PROGRESS_REFRESH_LIMIT``, in requests) goes to the bots whose
submissions were checked longest ago; what it does not cover waits for the next run and is
counted as possibly stale.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from iozen_etl.api.models import IntakeBot
from iozen_etl.api.paging import PAGE_SIZE
from iozen_etl.sync.state import (
    RESCAN_STREAM,
    SUBMISSIONS_STREAM,
    StateStore,
    StreamState,
    TrackedPage,
)


@dataclass(frozen=True)
class RefreshPlan:
    """How one bot's IN_PROGRESS submissions are read again in this run."""

    tracked: int  # IN_PROGRESS submissions the bot holds
    pages_from: TrackedPage | None = None  # re-read the bot's pages from here to the end
    pages_covered: int = 0  # of ``tracked``, those that re-read (or a rescan) reaches
    gets: int = 0  # GETs funded, least recently checked first (after any pages)

    @property
    def unchecked(self) -> int:
        """Submissions this plan leaves for a later run (they may be stale until then)."""
        return max(0, self.tracked - self.pages_covered - self.gets)

    @property
    def reads(self) -> bool:
        """Whether the plan reads anything in this run (pages or GETs)."""
        return self.pages_from is not None or self.gets > 0


def pages_to_end(position: int, submission_count: int) -> int:
    """Requests to read a bot's list from after ``position`` submissions to its end (at least
    one: the last page answers even when empty)."""
    return max(1, math.ceil(max(0, submission_count - position) / PAGE_SIZE))


def plan_refreshes(
    bots: Sequence[IntakeBot],
    state: StateStore,
    budget: int,
    *,
    rescanned: Collection[str] = (),
) -> tuple[dict[str, RefreshPlan], int]:
    """A plan for every bot of ``bots`` holding IN_PROGRESS submissions, within ``budget``
    requests, and the requests left over. Bots in ``rescanned`` read every page anyway."""
    held = state.in_progress_oldest_checks()
    by_id = {bot.id: bot for bot in bots}
    plans: dict[str, RefreshPlan] = {}
    # Least recently checked first: a budget too small for every bot works through them in turn.
    for bot_id in sorted((b for b in held if b in by_id), key=lambda b: (held[b][1], b)):
        tracked = held[bot_id][0]
        live = state.get(SUBMISSIONS_STREAM, bot_id)
        rescanning = bot_id in rescanned or state.get(RESCAN_STREAM, bot_id) is not None
        if live is None or live.completed_at is None or rescanning:
            # Read in full anyway, or read by a first scan still under way (a resumed one need
            # not read its rows again).
            plans[bot_id] = RefreshPlan(tracked, pages_covered=tracked)
            continue
        pages = state.in_progress_pages(bot_id)
        plan, spent = _cheapest(by_id[bot_id], live, pages, tracked, budget)
        budget -= spent
        plans[bot_id] = plan
    return plans, budget


def _cheapest(
    bot: IntakeBot, live: StreamState, pages: Sequence[TrackedPage], tracked: int, budget: int
) -> tuple[RefreshPlan, int]:
    """The bot's plan and the requests it spends beyond what its live stream reads anyway."""
    known = sum(page.submissions for page in pages)
    if pages:
        first = pages[0]
        moved = (
            live.seen_submission_count != bot.submission_count
            or live.seen_bot_updated_at != bot.updated_at
        )
        # The live stream reads from its resume point to the end anyway when the bot moved.
        paid = 0
        if moved and live.position is not None:
            paid = pages_to_end(live.position, bot.submission_count)
        extra = max(0, pages_to_end(first.position, bot.submission_count) - paid)
        if extra < known and extra <= budget:
            gets = min(budget - extra, tracked - known)
            return RefreshPlan(tracked, first, known, gets), extra + gets
    gets = min(budget, tracked)
    return RefreshPlan(tracked, gets=gets), gets
