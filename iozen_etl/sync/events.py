"""Webhook events into the lake: each named submission fetched by id, each bot whose status
changed read again, written as files of their own for the warehouse to merge newest-wins.

An event names what changed; what it carries is not taken as the record (its payload is
documented only in part), so each submission is asked for by id. The caller marks done the
events this returns as done, only after these files are durable: a crash before that fetches
them again, which the newest-wins merge makes harmless. A submission that no longer exists
(404) is counted as gone and its event done, never retried; any other error leaves its events
pending for the next run, named in the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from iozen_etl.api.errors import IozenError, ResourceNotFound
from iozen_etl.api.models import IntakeBot, Submission
from iozen_etl.sync import normalise
from iozen_etl.sync.client import SyncClient
from iozen_etl.sync.lake import Lake, stamp
from iozen_etl.sync.state import utc_now_iso

SUBMISSION_EVENTS = frozenset({"submission.completed", "submission.updated"})
BOT_STATUS_EVENT = "intake-bot.status-changed"


@dataclass(frozen=True)
class Event:
    """What the act step needs of a kept event."""

    event_id: str
    event_type: str
    submission_id: str | None
    intake_bot_id: str | None
    payload: Mapping[str, Any]


@dataclass
class EventsReport:
    events: int = 0
    submissions_fetched: int = 0
    submissions_gone: int = 0
    bots_refreshed: int = 0
    events_ignored: int = 0  # types that name nothing to fetch (contacts, unknown ones)
    files_written: int = 0
    requests: int = 0
    seconds: float = 0.0
    done: list[str] = field(default_factory=list)  # event ids to mark done
    errors: list[str] = field(default_factory=list)  # one line each; their events stay pending


def apply_events(
    client: SyncClient,
    lake: Lake,
    events: Sequence[Event],
    *,
    clock: Callable[[], str] = utc_now_iso,
) -> EventsReport:
    """Fetch what ``events`` name and write it to the lake; the report says which are done."""
    started = time.monotonic()
    synced_at = clock()
    report = EventsReport(events=len(events))
    wanted = _submissions_named(events)
    fetched = _fetch_submissions(client, wanted, report)
    bots = _fetch_bots(client, _bots_named(events), report)
    _write(lake, synced_at, fetched, bots, report)
    failed = {key for key, error in wanted.items() if error}
    for event in events:
        key = (event.intake_bot_id, event.submission_id)
        if event.event_type in SUBMISSION_EVENTS and key in wanted:
            if key not in failed:
                report.done.append(event.event_id)
        elif event.event_type == BOT_STATUS_EVENT and _bot_of(event) is not None:
            if _bot_of(event) in bots:
                report.done.append(event.event_id)
        else:
            report.events_ignored += 1
            report.done.append(event.event_id)
    report.seconds = time.monotonic() - started
    return report


def _submissions_named(events: Iterable[Event]) -> dict[tuple[str | None, str | None], str]:
    """(bot id, submission id) of each submission event, once; the value is set to an error."""
    return {
        (event.intake_bot_id, event.submission_id): ""
        for event in events
        if event.event_type in SUBMISSION_EVENTS and event.submission_id and event.intake_bot_id
    }


def _fetch_submissions(
    client: SyncClient, wanted: dict[tuple[str | None, str | None], str], report: EventsReport
) -> dict[str, list[Submission]]:
    by_bot: dict[str, list[Submission]] = {}
    for bot_id, submission_id in wanted:
        assert bot_id is not None and submission_id is not None
        report.requests += 1
        try:
            sub = client.get_submission(bot_id, submission_id)
        except ResourceNotFound:
            report.submissions_gone += 1
            continue
        except IozenError as error:
            wanted[(bot_id, submission_id)] = str(error)
            report.errors.append(f"submission {submission_id} of bot {bot_id}: {error}")
            continue
        if sub.message_count is None and sub.messages is not None:
            # The detail carries the messages but not their count, which the list sends.
            sub = replace(sub, message_count=len(sub.messages))
        by_bot.setdefault(bot_id, []).append(sub)
        report.submissions_fetched += 1
    return by_bot


def _bot_of(event: Event) -> str | None:
    data = event.payload.get("data")
    bot = data.get("intake_bot") if isinstance(data, Mapping) else None
    bot_id = bot.get("id") if isinstance(bot, Mapping) else event.intake_bot_id
    return bot_id if isinstance(bot_id, str) and bot_id else None


def _bots_named(events: Iterable[Event]) -> list[str]:
    named = (_bot_of(e) for e in events if e.event_type == BOT_STATUS_EVENT)
    return list(dict.fromkeys(bot_id for bot_id in named if bot_id))


def _fetch_bots(
    client: SyncClient, bot_ids: Sequence[str], report: EventsReport
) -> dict[str, IntakeBot | None]:
    """Each bot read again; None for one deleted since (its event is done: nothing to read)."""
    bots: dict[str, IntakeBot | None] = {}
    for bot_id in bot_ids:
        report.requests += 1
        try:
            bots[bot_id] = client.get_intake_bot(bot_id)
        except ResourceNotFound:
            bots[bot_id] = None
        except IozenError as error:
            report.errors.append(f"bot {bot_id}: {error}")
    return bots


def _write(
    lake: Lake,
    synced_at: str,
    fetched: Mapping[str, list[Submission]],
    bots: Mapping[str, IntakeBot | None],
    report: EventsReport,
) -> None:
    stem = f"events-{stamp(synced_at)}"
    files: list[tuple[str, str | None, str, Any]] = []
    for bot_id, subs in fetched.items():
        tables = normalise.page_tables(subs, synced_at)
        files += [
            ("submission_answers", bot_id, stem, tables.answers),
            ("submissions", bot_id, stem, tables.submissions),
        ]
    found = [bot for bot in bots.values() if bot is not None]
    if found:
        files.append(("intake_bots", None, stem, normalise.bots_table(found, synced_at)))
    if files:
        lake.write_many(files)
        report.files_written += len(files)
        report.bots_refreshed += len(found)
