from __future__ import annotations

import sqlite3
import threading

from iozen_etl.sync.state import RESCAN_STREAM, SUBMISSIONS_STREAM, StateStore
from tests.support.sync import in_progress_counts


def test_commit_page_moves_the_resume_point_and_tracks_in_progress(tmp_path):
    with StateStore(tmp_path / "state.sqlite") as state:
        state.commit_pages(
            SUBMISSIONS_STREAM,
            "b1",
            "c100",
            100,
            in_progress=[("s1", "t1", "d1"), ("s2", "t1", None)],
        )
        state.commit_pages(
            SUBMISSIONS_STREAM,
            "b1",
            "c200",
            50,
            in_progress=[("s3", "t2", "d3")],
            not_in_progress=["s1"],
        )
        row = state.get(SUBMISSIONS_STREAM, "b1")
        assert row is not None
        assert (row.resume_point, row.pages_total, row.rows_total) == ("c200", 2, 150)
        assert in_progress_counts(state) == {"b1": 2}
        assert sorted(state.in_progress("b1", 10)) == [("s2", "t1", None), ("s3", "t2", "d3")]
        assert state.get(SUBMISSIONS_STREAM, "other") is None


def test_state_survives_reopening_and_is_wal(tmp_path):
    path = tmp_path / "state.sqlite"
    with StateStore(path) as state:
        state.commit_pages(SUBMISSIONS_STREAM, "b1", "c1", 1)
        state.complete_scan(
            "b1",
            submission_count=1,
            bot_updated_at="u1",
            resume_point="c1",
            needs_rescan=None,
            generation=0,
        )
    with StateStore(path) as state:
        row = state.get(SUBMISSIONS_STREAM, "b1")
        assert row is not None and row.seen_submission_count == 1 and row.completed_at
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_finishing_a_rescan_moves_the_live_point_and_drops_the_rescan_row(tmp_path):
    with StateStore(tmp_path / "s.sqlite") as state:
        state.commit_pages(SUBMISSIONS_STREAM, "b1", "c5", 5)
        state.start_scan(RESCAN_STREAM, "b1", reason="full_refresh", generation=1)
        state.commit_pages(RESCAN_STREAM, "b1", "c3", 3)
        live = state.get(SUBMISSIONS_STREAM, "b1")
        assert live is not None and live.resume_point == "c5"
        state.finish_rescan(
            "b1",
            submission_count=9,
            bot_updated_at="u",
            resume_point="c9",
            needs_rescan=None,
            generation=1,
        )
        assert state.get(RESCAN_STREAM, "b1") is None
        live = state.get(SUBMISSIONS_STREAM, "b1")
        assert live is not None
        assert (live.resume_point, live.scan_generation) == ("c9", 1)


def test_commits_from_many_threads_are_all_kept(tmp_path):
    with StateStore(tmp_path / "s.sqlite") as state:

        def work(bot: int) -> None:
            for page in range(50):
                state.commit_pages(SUBMISSIONS_STREAM, f"b{bot}", f"c{page}", 1)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rows = state.all(SUBMISSIONS_STREAM)
        assert len(rows) == 8
        assert {(r.resume_point, r.pages_total) for r in rows.values()} == {("c49", 50)}


def test_read_table_copies_a_table_as_stored_without_creating_anything(tmp_path):
    path = tmp_path / "state.sqlite"
    assert StateStore.read_table(path, "sync_state") is None
    assert not path.exists()
    with StateStore(path) as state:
        state.commit_pages(SUBMISSIONS_STREAM, "b1", "c1", 1)
    stored = StateStore.read_table(path, "sync_state")
    assert stored is not None
    names = [name for name, _ in stored.columns]
    assert ("stream", "TEXT") in stored.columns and ("position", "INTEGER") in stored.columns
    assert len(stored.rows) == 1
    row = dict(zip(names, stored.rows[0], strict=True))
    assert (row["stream"], row["intake_bot_id"], row["resume_point"]) == ("submissions", "b1", "c1")
    assert StateStore.read_table(path, "no_such_table") is None
