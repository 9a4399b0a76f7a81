"""The replay ledger: one row per idempotency key, in the SQLite state file (WAL).

A row is committed as ``pending`` before its POST leaves and as ``created`` after the answer, so
a crash at any point leaves either a created row (never sent again) or a pending row (sent again
with the same key, which the server answers with the original submission). ``in_doubt_since``
marks a POST that left without a definite answer: once that is older than the server's key
lifetime, a resend could create a duplicate, so the row is held for a person to decide.
``idempotency_key`` is the row's identity; ``wire_key`` is set only when the row had to be sent
under another key (the engine's re-key after a 409 on a cut-off attempt).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

OUTCOMES = ("created", "rejected", "conflict", "pending", "held")

_DDL = """
create table if not exists replay_ledger (
    idempotency_key text primary key,
    file text not null,
    row_number integer not null,
    intake_bot_id text,
    outcome text not null check (outcome in ('created', 'rejected', 'conflict', 'pending', 'held')),
    submission_id text,
    request_id text,
    attempts integer not null default 0,
    first_attempt_at text,
    last_attempt_at text,
    in_doubt_since text,
    content_sha256 text,
    wire_key text,
    reason text,
    updated_at text not null
);
create index if not exists replay_ledger_file_row on replay_ledger (file, row_number);
"""

_COLUMNS = (
    "idempotency_key, file, row_number, intake_bot_id, outcome, submission_id, request_id, "
    "attempts, first_attempt_at, last_attempt_at, in_doubt_since, content_sha256, wire_key, "
    "reason, updated_at"
)


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """SQLite's errors name no file ("disk I/O error"): say it is the state file."""
    try:
        yield
    except sqlite3.Error as error:
        raise OSError(f"state file {path}: {error}") from error


@dataclass(frozen=True)
class LedgerEntry:
    idempotency_key: str
    file: str
    row_number: int
    intake_bot_id: str | None
    outcome: str
    submission_id: str | None
    request_id: str | None
    attempts: int
    first_attempt_at: str | None
    last_attempt_at: str | None
    in_doubt_since: str | None
    content_sha256: str | None
    wire_key: str | None  # the Idempotency-Key sent, when it is not idempotency_key (re-keyed)
    reason: str | None
    updated_at: str

    @property
    def key_on_the_wire(self) -> str:
        return self.wire_key or self.idempotency_key


def iso_utc(epoch_s: float) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, the API's own timestamp form."""
    moment = dt.datetime.fromtimestamp(epoch_s, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch_of(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


class Ledger:
    """Reads and writes ``replay_ledger``; one connection, used from one thread."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.read_only = read_only
        self._path = path
        self._conn: sqlite3.Connection | None
        if read_only:
            # A dry run must not even create the state file.
            self._conn = (
                sqlite3.connect(f"file:{path}?mode=ro", uri=True) if path.exists() else None
            )
            if self._conn is not None and not self._has_table(self._conn):
                self._conn.close()
                self._conn = None
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        try:
            with _naming(path):
                conn.execute("pragma journal_mode=wal")
                # NORMAL in WAL mode: a commit survives a killed process, which is the crash
                # the ledger guards against. FULL would fsync twice per row and, on a busy
                # disk, cost far more than the POST; a power cut may lose the last few commits,
                # and those rows are simply sent again with the same key, which the server
                # answers with the original.
                conn.execute("pragma synchronous=normal")
                conn.executescript(_DDL)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @staticmethod
    def _has_table(conn: sqlite3.Connection) -> bool:
        found = conn.execute(
            "select 1 from sqlite_master where type = 'table' and name = 'replay_ledger'"
        ).fetchone()
        return found is not None

    def get(self, key: str) -> LedgerEntry | None:
        if self._conn is None:
            return None
        found = self._conn.execute(
            f"select {_COLUMNS} from replay_ledger where idempotency_key = ?", (key,)
        ).fetchone()
        return LedgerEntry(*found) if found is not None else None

    def entries(self, file: str | None = None) -> list[LedgerEntry]:
        if self._conn is None:
            return []
        if file is None:
            rows = self._conn.execute(
                f"select {_COLUMNS} from replay_ledger order by file, row_number"
            )
        else:
            rows = self._conn.execute(
                f"select {_COLUMNS} from replay_ledger where file = ? order by row_number", (file,)
            )
        return [LedgerEntry(*row) for row in rows]

    def record_rejected(
        self, key: str, file: str, row: int, bot_id: str | None, reason: str, now: float
    ) -> None:
        self._upsert(key, file, row, bot_id, "rejected", None, reason, now)

    def record_unsent(
        self, key: str, file: str, row: int, bot_id: str, sha: str, reason: str, now: float
    ) -> None:
        """A valid row the run did not send (it stopped first): pending, not in doubt."""
        self._upsert(key, file, row, bot_id, "pending", sha, reason, now)

    def record_attempt(
        self, key: str, file: str, row: int, bot_id: str, sha: str, now: float
    ) -> None:
        """Committed before the POST leaves: from here until an answer, the row is in doubt."""
        stamp = iso_utc(now)
        self._write(
            """
            insert into replay_ledger (idempotency_key, file, row_number, intake_bot_id, outcome,
                attempts, first_attempt_at, last_attempt_at, in_doubt_since, content_sha256,
                updated_at)
            values (?, ?, ?, ?, 'pending', 1, ?, ?, ?, ?, ?)
            on conflict (idempotency_key) do update set
                file = excluded.file, row_number = excluded.row_number,
                intake_bot_id = excluded.intake_bot_id, outcome = 'pending',
                attempts = attempts + 1,
                first_attempt_at = coalesce(first_attempt_at, excluded.first_attempt_at),
                last_attempt_at = excluded.last_attempt_at,
                in_doubt_since = coalesce(in_doubt_since, excluded.in_doubt_since),
                content_sha256 = excluded.content_sha256, reason = null,
                updated_at = excluded.updated_at
            """,
            (key, file, row, bot_id, stamp, stamp, stamp, sha, stamp),
        )

    def record_created(
        self, key: str, submission_id: str, request_id: str | None, sha: str, now: float
    ) -> None:
        self._write(
            """
            update replay_ledger set outcome = 'created', submission_id = ?,
                request_id = coalesce(?, request_id), content_sha256 = ?, in_doubt_since = null,
                reason = null, updated_at = ?
            where idempotency_key = ?
            """,
            (submission_id, request_id, sha, iso_utc(now), key),
        )

    def record_answer(
        self,
        key: str,
        outcome: str,
        reason: str,
        request_id: str | None,
        now: float,
        *,
        definite: bool,
    ) -> None:
        """An answer that created nothing; ``definite`` clears the doubt (the server said no)."""
        self._write(
            """
            update replay_ledger set outcome = ?, reason = ?,
                request_id = coalesce(?, request_id),
                in_doubt_since = case when ? then null else in_doubt_since end,
                updated_at = ?
            where idempotency_key = ?
            """,
            (outcome, reason, request_id, definite, iso_utc(now), key),
        )

    def record_rekey(self, key: str, wire_key: str, reason: str, now: float) -> None:
        """The server proved nothing was created under the old wire key; use a new one."""
        self._write(
            """
            update replay_ledger set wire_key = ?, outcome = 'pending', in_doubt_since = null,
                reason = ?, updated_at = ?
            where idempotency_key = ?
            """,
            (wire_key, reason, iso_utc(now), key),
        )

    def record_outcome(self, key: str, outcome: str, reason: str | None, now: float) -> None:
        """Mark an existing row (conflict found locally, held, restored to created)."""
        self._write(
            "update replay_ledger set outcome = ?, reason = ?, updated_at = ? "
            "where idempotency_key = ?",
            (outcome, reason, iso_utc(now), key),
        )

    def _upsert(
        self,
        key: str,
        file: str,
        row: int,
        bot_id: str | None,
        outcome: str,
        sha: str | None,
        reason: str,
        now: float,
    ) -> None:
        self._write(
            """
            insert into replay_ledger (idempotency_key, file, row_number, intake_bot_id, outcome,
                content_sha256, reason, updated_at)
            values (?, ?, ?, ?, ?, ?, ?, ?)
            on conflict (idempotency_key) do update set
                file = excluded.file, row_number = excluded.row_number,
                intake_bot_id = excluded.intake_bot_id, outcome = excluded.outcome,
                content_sha256 = coalesce(excluded.content_sha256, content_sha256),
                reason = excluded.reason, updated_at = excluded.updated_at
            """,
            (key, file, row, bot_id, outcome, sha, reason, iso_utc(now)),
        )

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        if self._conn is None or self.read_only:
            raise RuntimeError("the ledger was opened read-only (dry run)")
        # Autocommit (isolation_level=None): each statement is its own committed transaction.
        with _naming(self._path):
            self._conn.execute(sql, params)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
