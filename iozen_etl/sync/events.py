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
from dataclasses import dataclass, field
from typing import Any

from iozen_etl.api.errors import IozenError, ResourceNotFound
from iozen_etl.api.models import IntakeBot, Submission
from iozen_etl.receiver import StoredEvent
from iozen_etl.sync import normalise
from iozen_etl.sync.client import SyncClient, fetch_submission
from iozen_etl.sync.lake import Lake, stamp
from iozen_etl.sync.state import utc_now_iso

SUBMISSION_EVENTS = frozenset({"submission.completed", "submission.updated"})
BOT_STATUS_EVENT = "intake-bot.status-changed"

# (bot id, submission id) of a submission an event names.
Named = tuple[str, str]


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
    events: Sequence[StoredEvent],
    *,
    clock: Callable[[], str] = utc_now_iso,
) -> EventsReport:
    """Fetch what ``events`` name and write it to the lake; the report says which are done."""
    started = time.monotonic()
    synced_at = clock()
    report = EventsReport(events=len(events))
    bot_of = {e.event_id: _bot_of(e) for e in events if e.event_type == BOT_STATUS_EVENT}
    fetched, failed = _fetch_submissions(client, _submissions_named(events), report)
    bots = _fetch_bots(client, list(dict.fromkeys(b for b in bot_of.values() if b)), report)
    _write(lake, synced_at, fetched, bots, report)
    for event in events:
        named = _submission_of(event)
        bot_id = bot_of.get(event.event_id)
        if named is not None:
            done = named not in failed
        elif bot_id is not None:
            done = bot_id in bots
        else:
            report.events_ignored += 1
            done = True
        if done:
            report.done.append(event.event_id)
    report.seconds = time.monotonic() - started
    return report


def _submission_of(event: StoredEvent) -> Named | None:
    if event.event_type in SUBMISSION_EVENTS and event.intake_bot_id and event.submission_id:
        return (event.intake_bot_id, event.submission_id)
    return None


def _submissions_named(events: Iterable[StoredEvent]) -> list[Named]:
    """Each submission the events name, once."""
    return list(dict.fromkeys(named for e in events if (named := _submission_of(e))))


def _fetch_submissions(
    client: SyncClient, wanted: Sequence[Named], report: EventsReport
) -> tuple[dict[str, list[Submission]], set[Named]]:
    """The submissions fetched, by bot; and those whose fetch failed (their events wait)."""
    by_bot: dict[str, list[Submission]] = {}
    failed: set[Named] = set()
    for bot_id, submission_id in wanted:
        report.requests += 1
        try:
            sub = fetch_submission(client, bot_id, submission_id)
        except ResourceNotFound:
            report.submissions_gone += 1
            continue
        except IozenError as error:
            failed.add((bot_id, submission_id))
            report.errors.append(f"submission {submission_id} of bot {bot_id}: {error}")
            continue
        by_bot.setdefault(bot_id, []).append(sub)
        report.submissions_fetched += 1
    return by_bot, failed


def _bot_of(event: StoredEvent) -> str | None:
    data = event.payload.get("data")
    bot = data.get("intake_bot") if isinstance(data, Mapping) else None
    bot_id = bot.get("id") if isinstance(bot, Mapping) else event.intake_bot_id
    return bot_id if isinstance(bot_id, str) and bot_id else None


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
