"""Sync state in SQLite (WAL): resume points per (stream, bot), and submissions stored IN_PROGRESS.

SQLite because a commit per batch of pages must be cheap (WAL mode with ``synchronous=NORMAL``,
which survives a killed process; a power cut may lose the last commits, and then the pages after
the older resume point are fetched again and their files replaced, never duplicated).
One connection guarded by a lock serves every thread of a run.

Over 400 lines on purpose: this module is the one place that knows the state file's tables
(``sync_state``, ``in_progress``, the pipeline's ``bot_listing``) and their SQL; other readers,
such as the warehouse's copy, go through :meth:`StateStore.read_table`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias

from iozen_etl.api.models import IntakeBot

# Stream names in sync_state.
SCHEMA_STREAM = "intake_bot_schema"  # per bot: the bot version whose schema is stored
SUBMISSIONS_STREAM = "submissions"  # per bot: the live resume point
RESCAN_STREAM = "submissions_rescan"  # per bot: a full refresh / fallback rescan in progress
WEBHOOKS_STREAM = "webhooks"

# A submission stored as IN_PROGRESS: (id, updated_at, digest of its answers or None).
InProgress: TypeAlias = tuple[str, str, str | None]
# Columns added after the first release, with their tables: an older state file gains them
# (NULL: unknown, so those rows are refreshed one GET each until read again in pages).
_ADDED_COLUMNS = (
    ("in_progress", "data_digest", "TEXT"),
    ("in_progress", "page_start", "TEXT"),
    ("in_progress", "page_position", "INTEGER"),
    ("sync_state", "position", "INTEGER"),
    ("sync_state", "page_start_position", "INTEGER"),
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_state (
    stream TEXT NOT NULL,
    intake_bot_id TEXT NOT NULL,            -- '' for streams that are not per bot
    resume_point TEXT,                      -- where the next page starts; NULL: from the start
    page_start TEXT,                        -- where the last committed page started
    position INTEGER,                       -- submissions before resume_point; NULL: unknown
    page_start_position INTEGER,            -- submissions before page_start; NULL: unknown
    scan_generation INTEGER NOT NULL DEFAULT 0,  -- bumped each time a scan starts over
    seen_submission_count INTEGER,          -- the bot's count when a scan last reached the end
    seen_bot_updated_at TEXT,               -- the bot's updated_at at that moment
    needs_rescan TEXT,                      -- why the next sync of this bot scans from the start
    bot_schema_shape TEXT,                  -- shape of the stored schema; webhooks: list digest
    pages_total INTEGER NOT NULL DEFAULT 0,
    rows_total INTEGER NOT NULL DEFAULT 0,
    rescans_total INTEGER NOT NULL DEFAULT 0,
    completed_at TEXT,                      -- when a scan last reached the end
    updated_at TEXT NOT NULL,
    PRIMARY KEY (stream, intake_bot_id)
);
CREATE TABLE IF NOT EXISTS in_progress (
    intake_bot_id TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    updated_at TEXT NOT NULL,               -- the version stored in the lake
    checked_at TEXT NOT NULL,               -- last time it was read; oldest are refreshed first
    data_digest TEXT,                       -- digest of the stored answers; NULL: unknown
    page_start TEXT,                        -- where the pages holding it were read from
    page_position INTEGER,                  -- submissions before page_start; NULL: unknown
    PRIMARY KEY (intake_bot_id, submission_id)
);
"""


class StateFileError(OSError):
    """The state file could not be read or written (disk full, file too large, I/O error):
    the message names the file. An OSError, as any other failure of storage is."""


@dataclass(frozen=True)
class StreamState:
    stream: str
    intake_bot_id: str
    resume_point: str | None
    page_start: str | None
    position: int | None
    page_start_position: int | None
    scan_generation: int
    seen_submission_count: int | None
    seen_bot_updated_at: str | None
    needs_rescan: str | None
    bot_schema_shape: str | None
    pages_total: int
    rows_total: int
    rescans_total: int
    completed_at: str | None
    updated_at: str


@dataclass(frozen=True)
class TrackedPage:
    """A page start holding IN_PROGRESS submissions: re-reading from it reads them again."""

    start: str | None  # None: the stream's beginning
    position: int  # submissions before it
    submissions: int  # IN_PROGRESS submissions read from it


_COLUMNS = (
    "stream, intake_bot_id, resume_point, page_start, position, page_start_position, "
    "scan_generation, seen_submission_count, "
    "seen_bot_updated_at, needs_rescan, bot_schema_shape, pages_total, rows_total, "
    "rescans_total, completed_at, updated_at"
)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StoredTable:
    """One table of the state file as stored: SQLite is dynamically typed, so a value need not
    match its column's declared type."""

    columns: tuple[tuple[str, str], ...]  # (name, declared type; "" when none)
    rows: list[tuple[object, ...]]


class StateStore:
    """Thread-safe access to ``sync_state`` and ``in_progress`` in the state file."""

    @staticmethod
    def read_table(path: Path, table: str) -> StoredTable | None:
        """Any table of the state file as stored (None: no such file or table), for copies.

        Opened read-only and apart from any store: it never creates the file or adds columns,
        and never takes a write lock the sync would wait on.
        """
        if not path.exists():
            return None
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        try:
            info = db.execute(f'PRAGMA table_info("{table}")').fetchall()
            if not info:
                return None
            names = [str(row[1]) for row in info]
            quoted = ", ".join(f'"{name}"' for name in names)
            rows = db.execute(f'SELECT {quoted} FROM "{table}"').fetchall()
        finally:
            db.close()
        return StoredTable(tuple((str(row[1]), str(row[2] or "")) for row in info), rows)

    def __init__(self, path: Path, *, now: Callable[[], str] = utc_now_iso) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._now = now
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            with self._naming_the_file():
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA busy_timeout=10000")
                self._db.executescript(_SCHEMA)
                for table, column, kind in _ADDED_COLUMNS:
                    info = self._db.execute(f"PRAGMA table_info({table})")
                    if column not in {row[1] for row in info}:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _naming_the_file(self) -> Iterator[None]:
        """SQLite's errors name no file ("disk I/O error"): say it is this state file."""
        try:
            yield
        except sqlite3.Error as error:
            raise StateFileError(f"state file {self.path}: {error}") from error

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._naming_the_file():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # A COMMIT that could not write leaves the transaction open; the next one on
                # this connection must not start inside it.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    # -- sync_state -----------------------------------------------------------------------

    def get(self, stream: str, intake_bot_id: str = "") -> StreamState | None:
        with self._lock, self._naming_the_file():
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM sync_state WHERE stream = ? AND intake_bot_id = ?",
                (stream, intake_bot_id),
            ).fetchone()
        return StreamState(*row) if row else None

    def all(self, stream: str) -> dict[str, StreamState]:
        with self._lock, self._naming_the_file():
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM sync_state WHERE stream = ?", (stream,)
            ).fetchall()
        return {row[1]: StreamState(*row) for row in rows}

    def _ensure(self, db: sqlite3.Connection, stream: str, intake_bot_id: str) -> None:
        db.execute(
            "INSERT OR IGNORE INTO sync_state (stream, intake_bot_id, updated_at) VALUES (?, ?, ?)",
            (stream, intake_bot_id, self._now()),
        )

    def commit_pages(
        self,
        stream: str,
        intake_bot_id: str,
        resume_point: str | None,
        rows: int,
        *,
        page_start: str | None = None,
        start_position: int | None = None,
        pages: int = 1,
        in_progress: Iterable[InProgress] = (),
        not_in_progress: Iterable[str] = (),
    ) -> None:
        """Move a resume point past pages that are already durable, in one transaction with
        their IN_PROGRESS bookkeeping; ``page_start`` is where the first of them began, after
        ``start_position`` submissions (None: unknown)."""
        now = self._now()
        position = None if start_position is None else start_position + rows
        with self._transaction() as db:
            self._ensure(db, stream, intake_bot_id)
            db.execute(
                "UPDATE sync_state SET resume_point = ?, page_start = ?, position = ?, "
                "page_start_position = ?, pages_total = pages_total + ?, "
                "rows_total = rows_total + ?, updated_at = ? "
                "WHERE stream = ? AND intake_bot_id = ?",
                (
                    resume_point,
                    page_start,
                    position,
                    start_position,
                    pages,
                    rows,
                    now,
                    stream,
                    intake_bot_id,
                ),
            )
            self._track(
                db, intake_bot_id, in_progress, not_in_progress, now, (page_start, start_position)
            )

    def track_in_progress(
        self,
        intake_bot_id: str,
        in_progress: Iterable[InProgress],
        not_in_progress: Iterable[str],
    ) -> None:
        """Record (submission id, updated_at, data digest) still IN_PROGRESS; forget the others.
        Where each was read from stays as it was."""
        with self._transaction() as db:
            self._track(db, intake_bot_id, in_progress, not_in_progress, self._now(), None)

    @staticmethod
    def _track(
        db: sqlite3.Connection,
        intake_bot_id: str,
        in_progress: Iterable[InProgress],
        not_in_progress: Iterable[str],
        now: str,
        read_from: tuple[str | None, int | None] | None,
    ) -> None:
        # read_from: (page start, submissions before it) of the pages these rows were read in;
        # None keeps what is stored (a row read again by a GET).
        start, position = read_from if read_from is not None else (None, None)
        moved = (
            ", page_start = excluded.page_start, page_position = excluded.page_position"
            if read_from is not None
            else ""
        )
        db.executemany(
            "INSERT INTO in_progress (intake_bot_id, submission_id, updated_at, checked_at, "
            "data_digest, page_start, page_position) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (intake_bot_id, submission_id) DO UPDATE SET "
            "updated_at = excluded.updated_at, checked_at = excluded.checked_at, "
            "data_digest = excluded.data_digest" + moved,
            [
                (intake_bot_id, sid, updated, now, digest, start, position)
                for sid, updated, digest in in_progress
            ],
        )
        # One statement per chunk: most pages forget ~100 ids that were never tracked.
        gone = list(not_in_progress)
        for at in range(0, len(gone), 500):
            chunk = gone[at : at + 500]
            marks = ",".join("?" * len(chunk))
            db.execute(
                f"DELETE FROM in_progress WHERE intake_bot_id = ? AND submission_id IN ({marks})",
                [intake_bot_id, *chunk],
            )

    def start_scan(
        self, stream: str, intake_bot_id: str, *, reason: str | None, generation: int
    ) -> None:
        """Start ``stream`` over from the beginning under a new generation (new file names)."""
        with self._transaction() as db:
            self._ensure(db, stream, intake_bot_id)
            db.execute(
                "UPDATE sync_state SET resume_point = NULL, page_start = NULL, position = 0, "
                "page_start_position = 0, scan_generation = ?, "
                "rescans_total = rescans_total + 1, needs_rescan = COALESCE(?, needs_rescan), "
                "updated_at = ? WHERE stream = ? AND intake_bot_id = ?",
                (generation, reason, self._now(), stream, intake_bot_id),
            )

    def complete_scan(
        self,
        intake_bot_id: str,
        *,
        submission_count: int,
        bot_updated_at: str,
        resume_point: str | None,
        needs_rescan: str | None,
        generation: int,
    ) -> None:
        """The live stream reached the end: remember what the bot looked like then."""
        now = self._now()
        with self._transaction() as db:
            self._ensure(db, SUBMISSIONS_STREAM, intake_bot_id)
            db.execute(
                "UPDATE sync_state SET resume_point = ?, scan_generation = ?, "
                "seen_submission_count = ?, seen_bot_updated_at = ?, needs_rescan = ?, "
                "completed_at = ?, updated_at = ? WHERE stream = ? AND intake_bot_id = ?",
                (
                    resume_point,
                    generation,
                    submission_count,
                    bot_updated_at,
                    needs_rescan,
                    now,
                    now,
                    SUBMISSIONS_STREAM,
                    intake_bot_id,
                ),
            )

    def finish_rescan(
        self,
        intake_bot_id: str,
        *,
        submission_count: int,
        bot_updated_at: str,
        resume_point: str | None,
        needs_rescan: str | None,
        generation: int,
    ) -> None:
        """A rescan reached the end: it is now at least as far as the live stream, so the live
        resume point moves to where it ended (with where its last pages began), and the rescan
        row goes."""
        with self._transaction() as db:
            self._ensure(db, SUBMISSIONS_STREAM, intake_bot_id)
            db.execute(
                "UPDATE sync_state SET (page_start, position, page_start_position) = "
                "(SELECT page_start, position, page_start_position FROM sync_state "
                " WHERE stream = ? AND intake_bot_id = ?) "
                "WHERE stream = ? AND intake_bot_id = ?",
                (RESCAN_STREAM, intake_bot_id, SUBMISSIONS_STREAM, intake_bot_id),
            )
            db.execute(
                "DELETE FROM sync_state WHERE stream = ? AND intake_bot_id = ?",
                (RESCAN_STREAM, intake_bot_id),
            )
        self.complete_scan(
            intake_bot_id,
            submission_count=submission_count,
            bot_updated_at=bot_updated_at,
            resume_point=resume_point,
            needs_rescan=needs_rescan,
            generation=generation,
        )

    def set_seen(
        self,
        stream: str,
        intake_bot_id: str,
        *,
        bot_updated_at: str,
        submission_count: int,
        schema_shape: str | None,
    ) -> None:
        """Remember the version of a bot (or a snapshot) that is now stored in the lake."""
        now = self._now()
        with self._transaction() as db:
            self._ensure(db, stream, intake_bot_id)
            db.execute(
                "UPDATE sync_state SET seen_bot_updated_at = ?, seen_submission_count = ?, "
                "bot_schema_shape = ?, completed_at = ?, pages_total = pages_total + 1, "
                "updated_at = ? WHERE stream = ? AND intake_bot_id = ?",
                (bot_updated_at, submission_count, schema_shape, now, now, stream, intake_bot_id),
            )

    # -- in_progress ----------------------------------------------------------------------

    def in_progress_oldest_checks(self) -> dict[str, tuple[int, str]]:
        """Per bot holding IN_PROGRESS submissions: (how many, when the least recently checked
        of them was read)."""
        with self._lock, self._naming_the_file():
            rows = self._db.execute(
                "SELECT intake_bot_id, count(*), min(checked_at) FROM in_progress "
                "GROUP BY intake_bot_id"
            ).fetchall()
        return {bot: (count, oldest) for bot, count, oldest in rows}

    def in_progress_pages(self, intake_bot_id: str) -> list[TrackedPage]:
        """Where the bot's IN_PROGRESS submissions were read: each page start with the
        submissions before it (known positions only), and how many of them it holds."""
        with self._lock, self._naming_the_file():
            rows = self._db.execute(
                "SELECT page_start, page_position, count(*) FROM in_progress "
                "WHERE intake_bot_id = ? AND page_position IS NOT NULL "
                "GROUP BY page_start, page_position ORDER BY page_position",
                (intake_bot_id,),
            ).fetchall()
        return [TrackedPage(start, position, count) for start, position, count in rows]

    def in_progress_details(
        self, intake_bot_id: str
    ) -> dict[str, tuple[str, str | None, int | None]]:
        """Every IN_PROGRESS submission of the bot: id -> (stored updated_at, data digest,
        submissions before the page start it was read from)."""
        with self._lock, self._naming_the_file():
            rows = self._db.execute(
                "SELECT submission_id, updated_at, data_digest, page_position FROM in_progress "
                "WHERE intake_bot_id = ?",
                (intake_bot_id,),
            ).fetchall()
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def in_progress(self, intake_bot_id: str, limit: int) -> list[InProgress]:
        """Up to ``limit`` (submission id, stored updated_at, stored data digest) of the bot,
        least recently checked first."""
        with self._lock, self._naming_the_file():
            rows = self._db.execute(
                "SELECT submission_id, updated_at, data_digest FROM in_progress "
                "WHERE intake_bot_id = ? ORDER BY checked_at, submission_id LIMIT ?",
                (intake_bot_id, limit),
            ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    # -- bot_listing (the pipeline's section) ------------------------------------------------
    # A run's bot listing, handed from its ``intake_bots`` step to its ``submissions`` step so a
    # run lists the bots once. Only the latest run's listing is kept.

    def save_listing(self, run_id: str, bots: Iterable[IntakeBot]) -> None:
        """Keep ``bots`` as the listing of run ``run_id`` (replacing any other run's)."""
        marker: tuple[object, ...] = (run_id, -1, None, None, None, None, None, None)
        rows = [marker] + [
            (run_id, at, b.id, b.name, b.status, b.submission_count, b.created_at, b.updated_at)
            for at, b in enumerate(bots)
        ]
        with self._transaction() as db:
            db.execute(_LISTING_TABLE)
            db.execute("DELETE FROM bot_listing")
            db.executemany("INSERT INTO bot_listing VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def listing(self, run_id: str) -> list[IntakeBot] | None:
        """The listing run ``run_id`` saved, in listing order; None when it saved none. The
        bots carry the listing's fields only (no schema)."""
        with self._transaction() as db:
            db.execute(_LISTING_TABLE)
            rows = db.execute(
                "SELECT id, name, status, submission_count, created_at, updated_at "
                "FROM bot_listing WHERE run_id = ? ORDER BY position",
                (run_id,),
            ).fetchall()
        if not rows:
            return None
        return [
            IntakeBot(
                id=bot_id,
                name=name,
                status=status,
                submission_count=count,
                created_at=created_at,
                updated_at=updated_at,
                description=None,
                share_url=None,
                schema=None,
                schema_shape=None,
                extra={},
            )
            for bot_id, name, status, count, created_at, updated_at in rows[1:]
        ]


# One row per listed bot, after a row of NULLs at position -1 that marks the run as listed (so
# a run that listed no bot differs from one that did not list).
_LISTING_TABLE = """
CREATE TABLE IF NOT EXISTS bot_listing (
    run_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    id TEXT,
    name TEXT,
    status TEXT,
    submission_count INTEGER,
    created_at TEXT,
    updated_at TEXT,
    PRIMARY KEY (run_id, position)
)
"""
