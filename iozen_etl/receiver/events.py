"""The receiver's events, kept in a SQLite file of their own before the sender hears 2xx.

One row per event id: a redelivery (ioZen retries until it sees 2xx) or a replayed request
finds its id there and is not stored twice. Rows stay pending until whatever acts on them marks
them done after its own work is committed, so a crash in between acts again and loses nothing.
A file apart from the state file, because the receiver runs in a process of its own and commits
per event, and should never wait on a sync's commits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
create table if not exists webhook_events (
    event_id text primary key,
    event_type text not null,
    received_at real not null,
    submission_id text,
    intake_bot_id text,
    body text not null,
    done_at real
);
create index if not exists webhook_events_pending on webhook_events (done_at, received_at);
"""


@dataclass(frozen=True)
class StoredEvent:
    event_id: str
    event_type: str
    received_at: float  # Unix seconds, on the receiver's clock
    submission_id: str | None
    intake_bot_id: str | None
    body: str  # the payload as received (UTF-8 JSON)

    @classmethod
    def from_payload(
        cls, event_id: str, payload: Mapping[str, Any], body: str, received_at: float
    ) -> StoredEvent:
        """The event of a parsed ``payload``; the submission it names, when it names one."""
        data = payload.get("data")
        submission = data.get("submission") if isinstance(data, Mapping) else None
        if not isinstance(submission, Mapping):
            submission = {}
        submission_id = submission.get("id")
        bot_id = submission.get("intake_bot_id")
        return cls(
            event_id=event_id,
            event_type=str(payload.get("type")),
            received_at=received_at,
            submission_id=submission_id if isinstance(submission_id, str) else None,
            intake_bot_id=bot_id if isinstance(bot_id, str) else None,
            body=body,
        )

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


class EventStore:
    """Events by id, durable on return from ``add`` (``synchronous=FULL``: fsync per commit)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # The receiver's handlers call in from a thread pool; one connection behind a lock.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode = wal")
        self._db.execute("pragma synchronous = full")
        self._db.execute("pragma busy_timeout = 10000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add(self, event: StoredEvent) -> bool:
        """Keep ``event``; False when its id was kept before (nothing is changed then)."""
        with self._lock:
            cursor = self._db.execute(
                "insert or ignore into webhook_events values (?, ?, ?, ?, ?, ?, null)",
                [
                    event.event_id,
                    event.event_type,
                    event.received_at,
                    event.submission_id,
                    event.intake_bot_id,
                    event.body,
                ],
            )
            return cursor.rowcount == 1

    def pending(self, limit: int = 10_000) -> list[StoredEvent]:
        """Events not marked done, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "select event_id, event_type, received_at, submission_id, intake_bot_id, body"
                " from webhook_events where done_at is null order by received_at, event_id"
                " limit ?",
                [limit],
            ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def newest_pending(self) -> tuple[int, str] | None:
        """(how many events are pending, the id of the newest), or None when none is."""
        with self._lock:
            count, newest = self._db.execute(
                "select count(*), (select event_id from webhook_events where done_at is null"
                " order by received_at desc, event_id desc limit 1)"
                " from webhook_events where done_at is null"
            ).fetchone()
        return (int(count), str(newest)) if count else None

    def mark_done(self, event_ids: Sequence[str], now: float) -> None:
        with self._lock:
            self._db.execute("begin immediate")
            self._db.executemany(
                "update webhook_events set done_at = ? where event_id = ? and done_at is null",
                [(now, event_id) for event_id in event_ids],
            )
            self._db.execute("commit")

    def count(self) -> int:
        with self._lock:
            row = self._db.execute("select count(*) from webhook_events").fetchone()
        return int(row[0])
