"""The replay ledger in SQLite: outcomes, attempts and the doubt window."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from iozen_etl.replay.ledger import Ledger, epoch_of, iso_utc

T0 = 1_780_000_000.0


def test_a_row_goes_pending_then_created(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    with Ledger(db) as ledger:
        ledger.record_attempt("k1", "/in.csv", 2, "bot", "sha", T0)
        pending = ledger.get("k1")
        assert pending is not None
        assert (pending.outcome, pending.attempts, pending.in_doubt_since) == (
            "pending",
            1,
            iso_utc(T0),
        )
        ledger.record_attempt("k1", "/in.csv", 2, "bot", "sha", T0 + 60)
        ledger.record_created("k1", "sub_1", "req_1", "sha", T0 + 61)
        created = ledger.get("k1")
    assert created is not None
    assert created.outcome == "created"
    assert created.attempts == 2
    assert created.first_attempt_at == iso_utc(T0)
    assert created.last_attempt_at == iso_utc(T0 + 60)
    assert created.in_doubt_since is None
    assert (created.submission_id, created.request_id) == ("sub_1", "req_1")


def test_the_pending_row_is_committed_for_other_readers_before_the_post(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    with Ledger(db) as ledger:
        ledger.record_attempt("k1", "/in.csv", 2, "bot", "sha", T0)
        # Another connection (as after a SIGKILL) sees it at once: no open transaction.
        other = sqlite3.connect(db)
        assert other.execute("select outcome from replay_ledger").fetchall() == [("pending",)]
        assert other.execute("pragma journal_mode").fetchone() == ("wal",)
        other.close()


def test_a_definite_refusal_clears_the_doubt_and_a_silent_failure_keeps_it(tmp_path: Path) -> None:
    with Ledger(tmp_path / "state.sqlite") as ledger:
        ledger.record_attempt("k1", "/in.csv", 2, "bot", "sha", T0)
        ledger.record_answer("k1", "pending", "timeout", None, T0 + 1, definite=False)
        kept = ledger.get("k1")
        ledger.record_attempt("k1", "/in.csv", 2, "bot", "sha", T0 + 100)
        still = ledger.get("k1")
        ledger.record_answer("k1", "pending", "plan limit", "req_9", T0 + 101, definite=True)
        cleared = ledger.get("k1")
    assert kept is not None and still is not None and cleared is not None
    assert kept.in_doubt_since == still.in_doubt_since == iso_utc(T0)
    assert cleared.in_doubt_since is None
    assert cleared.request_id == "req_9"


def test_a_dry_run_reader_creates_no_file(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    with Ledger(db, read_only=True) as ledger:
        assert ledger.get("k1") is None
        assert ledger.entries() == []
    assert not db.exists()


def test_times_are_api_style_iso_strings() -> None:
    assert iso_utc(T0) == "2026-05-28T20:26:40.000Z"
    assert epoch_of(iso_utc(T0 + 0.25)) == T0 + 0.25
