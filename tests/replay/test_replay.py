"""The replay engine against the sandbox in-process, proven by what the sandbox holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from iozen_etl.replay import CsvFileError, replay_csv
from iozen_etl.replay.engine import HOLD_AFTER_S
from iozen_etl.replay.inbox import inbox_files, is_settled
from iozen_etl.replay.ledger import Ledger
from iozen_etl.replay.rejects import rejects_path_for
from iozen_etl.replay.rows import BotForm, Prepared, prepare_row
from iozen_etl.sandbox import FaultSpec, SandboxRequest
from tests.support.csv import HEADER, onboarding_rows, read_csv, write_csv
from tests.support.worlds import ReplayWorld


def ledger_outcomes(world: ReplayWorld) -> dict[int, str]:
    with Ledger(world.paths.state_db) as ledger:
        return {entry.row_number: entry.outcome for entry in ledger.entries()}


def test_a_second_run_sends_no_post_and_creates_nothing(world: ReplayWorld) -> None:
    path = write_csv(world.tmp / "in.csv", HEADER, onboarding_rows(20))
    with world.client() as client:
        first = replay_csv(client, world.paths, path, bot_id=world.bot_id, concurrency=4)
    posts_after_first = world.posts()
    with world.client() as client:
        second = replay_csv(client, world.paths, path, bot_id=world.bot_id, concurrency=4)

    assert (first.created, first.already_created, first.posts_sent) == (20, 0, 20)
    assert (second.created, second.already_created, second.posts_sent) == (0, 20, 0)
    assert world.posts() == posts_after_first == 20
    created = world.created()
    assert sorted(sub["data"]["team_size"] for sub in created) == list(range(20))
    assert set(ledger_outcomes(world).values()) == {"created"}
    assert first.complete and second.complete
    assert not rejects_path_for(path).exists()


def test_rows_already_created_from_another_file_are_not_sent_again(world: ReplayWorld) -> None:
    first = write_csv(world.tmp / "january.csv", HEADER, onboarding_rows(5))
    # A later export holds the same five rows and three new ones.
    second = write_csv(world.tmp / "export.csv", HEADER, onboarding_rows(8))
    with world.client() as client:
        replay_csv(client, world.paths, first, bot_id=world.bot_id)
        report = replay_csv(client, world.paths, second, bot_id=world.bot_id)
    assert (report.created, report.already_created) == (3, 5)
    assert len(world.created()) == 8


MIXED_HEADER = (*HEADER, "_status", "_is_test", "_idempotency_key", "welcome_note")
GOOD_ROW = ["Ann", "ann@example.com", "3", "2026-07-01", "low", "crm", "y", "", "", "", ""]
MIXED_ROWS = [
    GOOD_ROW,  # row 2
    ["Bob", "", "3", "2026-07-01", "low", "crm", "y", "", "", "", ""],  # required empty
    ["Cy", "cy@example.com", "three", "2026-07-01", "low", "crm", "y", "", "", "", ""],
    ["Di", "di@example.com", "3", "07/01/2026", "low", "crm", "y", "", "", "", ""],
    ["Ed", "ed@example.com", "3", "2026-07-01", "urgent", "crm", "y", "", "", "", ""],
    ["Flo", "flo@example.com", "3", "2026-07-01", "low", "crm|ftp", "y", "", "", "", ""],
    ["Gus", "gus@example.com", "3", "2026-07-01", "low", "crm", "maybe", "", "", "", ""],
    ["Hal", "hal@example.com", "3", "2026-07-01", "low", "crm", "y", "done", "", "", ""],
    ["Ivy", "ivy@example.com", "3", "2026-07-01", "low", "crm", "y", "", "sure", "", ""],
    ["Jo", "jo@example.com", "3", "2026-07-01", "low", "crm", "y", "", "", "a key", ""],
    ["Kim", "kim.example.com", "3", "2026-07-01", "low", "crm", "y", "", "", "", ""],
    ["Lu", "lu@example.com", "3", "2026-07-01", "low", "crm", "y", "", "", "", "x" * 1_100_000],
    GOOD_ROW,  # row 14: the same answers as row 2
    [
        "Mo",
        "mo@example.com",
        "4",
        "2026-07-01",
        "HIGH",
        "API|crm",
        "no",
        "in progress",
        "1",
        "",
        "",
    ],
    ["Ned", "ned@example.com", "5", "2026-07-01", "", "", "t", "", "", "", "", "extra"],
]

# Each bad row of MIXED_ROWS (by spreadsheet row) with the field and words of its reason.
MIXED_EXPECTED = {
    3: ("email", "required field is empty"),
    4: ("team_size", "not a number"),
    5: ("start_date", "use yyyy-mm-dd"),
    6: ("priority", "not one of the options: low, medium, high"),
    7: ("products", "not one of the options"),
    8: ("consent", "not a boolean"),
    9: ("_status", "must be one of IN_PROGRESS, COMPLETED"),
    10: ("_is_test", "not a boolean"),
    11: ("_idempotency_key", "printable ASCII"),
    12: ("email", "not an email address"),
    13: ("welcome_note", "the API accepts at most 1,048,576"),
    14: (None, "same bot and answers as row 2"),
    16: (None, "row has 12 cells but the header has 11 columns"),
}


def test_bad_rows_of_every_kind_are_rejected_and_the_good_ones_created(world: ReplayWorld) -> None:
    # welcome_note is a long_text field added to the bot, so the column is known.
    world.sandbox.add_field(
        world.bot_id, {"name": "welcome_note", "label": "Note", "type": "long_text"}
    )
    path = write_csv(world.tmp / "mixed.csv", MIXED_HEADER, MIXED_ROWS)
    with world.client() as client:
        report = replay_csv(client, world.paths, path, bot_id=world.bot_id)

    expected = MIXED_EXPECTED
    got = {p.row: (p.field, p.reason) for p in report.problems}
    assert set(got) == set(expected)
    for row, (field, reason) in expected.items():
        assert got[row][0] == field, row
        assert reason in got[row][1], row
    assert (report.created, report.rejected) == (2, len(expected))
    created = world.created()
    assert sorted(sub["data"]["full_name"] for sub in created) == ["Ann", "Mo"]
    mo = next(sub for sub in created if sub["data"]["full_name"] == "Mo")
    assert (mo["status"], mo["is_test"]) == ("IN_PROGRESS", True)
    assert mo["data"]["priority"] == "high" and mo["data"]["products"] == ["api", "crm"]

    rejects = read_csv(rejects_path_for(path))
    assert [int(r["_row"]) for r in rejects] == sorted(expected)
    assert rejects[0]["email"] == "" and "required field is empty" in rejects[0]["_reason"]
    outcomes = ledger_outcomes(world)
    assert {row: outcomes[row] for row in expected} == dict.fromkeys(expected, "rejected")
    # No reason quotes an answer: they name fields, options and rules only.
    with Ledger(world.paths.state_db) as ledger:
        reasons = [e.reason or "" for e in ledger.entries()]
    for reason in [p.reason for p in report.problems] + reasons:
        assert not any(value in reason for value in ("three", "urgent", "ftp", "maybe", "Bob"))


def test_a_fixed_rejects_file_replays_as_it_is(world: ReplayWorld) -> None:
    rows = onboarding_rows(3)
    rows[1][3] = "01/07/2026"
    path = write_csv(world.tmp / "in.csv", HEADER, rows)
    with world.client() as client:
        assert replay_csv(client, world.paths, path, bot_id=world.bot_id).rejected == 1
        rejects = rejects_path_for(path)
        fixed = rejects.read_text(encoding="utf-8").replace("01/07/2026", "2026-07-01")
        rejects.write_text(fixed, encoding="utf-8")
        again = replay_csv(client, world.paths, rejects, bot_id=world.bot_id)
        rerun = replay_csv(client, world.paths, path, bot_id=world.bot_id)
    assert (again.created, again.rejected) == (1, 0)
    assert (rerun.already_created, rerun.rejected) == (2, 1)
    assert len(world.created()) == 3


def test_the_server_refusing_a_row_rejects_it_with_the_request_id(world: ReplayWorld) -> None:
    world.sandbox.pause_bot(world.bot_id)
    path = write_csv(world.tmp / "in.csv", HEADER, onboarding_rows(2))
    with world.client() as client:
        report = replay_csv(client, world.paths, path, bot_id=world.bot_id)
    assert (report.rejected, report.created) == (2, 0)
    assert "Intake bot is not accepting submissions" in report.problems[0].reason
    assert "request id req_" in report.problems[0].reason
    assert len(read_csv(rejects_path_for(path))) == 2


def test_a_changed_row_with_the_same_key_is_a_recorded_conflict(world: ReplayWorld) -> None:
    header = (*HEADER, "_idempotency_key")
    rows = [[*row, f"crm-{i}"] for i, row in enumerate(onboarding_rows(3))]
    path = write_csv(world.tmp / "in.csv", header, rows)
    with world.client() as client:
        replay_csv(client, world.paths, path, bot_id=world.bot_id)
        rows[1][4] = "medium"  # row 3 changes after it was created
        write_csv(path, header, rows)
        posts = world.posts()
        local = replay_csv(client, world.paths, path, bot_id=world.bot_id)
        # Another machine (no ledger) sends the changed row: the server answers 409.
        elsewhere = replay_csv(
            client, type(world.paths)(world.tmp / "other"), path, bot_id=world.bot_id
        )

    assert (local.conflicts, local.already_created, local.posts_sent) == (1, 2, 0)
    assert world.posts() == posts + 3  # only the run without a ledger sent anything
    assert local.problems[0].row == 3
    assert "changed since it was created as submission" in local.problems[0].reason
    assert ledger_outcomes(world)[3] == "conflict"
    assert (elsewhere.conflicts, elsewhere.created) == (1, 2)  # created: the server's replays
    assert "409 idempotency_conflict" in elsewhere.problems[0].reason
    assert len(world.created()) == 3
    with Ledger(world.tmp / "other" / "state.sqlite") as other:
        conflict = [e for e in other.entries() if e.outcome == "conflict"]
    assert [(e.row_number, e.idempotency_key) for e in conflict] == [(3, "crm-1")]


def cut_off_attempt(world: ReplayWorld, key: str) -> None:
    """What a client killed between sending its headers and its body leaves on the server."""
    answer = world.sandbox.handle(
        SandboxRequest(
            "POST",
            f"/api/v1/intake-bots/{world.bot_id}/submissions",
            "",
            {
                "authorization": f"Bearer {world.sandbox.api_key}",
                "content-type": "application/json",
                "idempotency-key": key,
            },
            b'{"data": {"full_na',
        )
    )
    assert answer.status == 400


def test_a_conflict_from_a_cut_off_attempt_is_resent_under_a_new_key(world: ReplayWorld) -> None:
    path = write_csv(world.tmp / "in.csv", HEADER, onboarding_rows(2))
    with world.client() as client:
        schema = client.get_intake_bot(world.bot_id).schema or ()
    forms: dict[str, BotForm | None] = {world.bot_id: BotForm.from_schema(world.bot_id, schema)}
    first = prepare_row(dict(zip(HEADER, onboarding_rows(1)[0], strict=True)), world.bot_id, forms)
    assert isinstance(first, Prepared)
    # The server now holds a 400 for a truncated body under row 2's derived key: the full body
    # meets 409, though no other body was ever sent under a key derived from this one.
    cut_off_attempt(world, first.key)

    with world.client() as client:
        report = replay_csv(client, world.paths, path, bot_id=world.bot_id)
        again = replay_csv(client, world.paths, path, bot_id=world.bot_id)
    assert (report.created, report.conflicts, report.posts_sent) == (2, 0, 3)
    assert (again.already_created, again.posts_sent) == (2, 0)
    assert len(world.created()) == 2
    with Ledger(world.paths.state_db) as ledger:
        entry = ledger.get(first.key)
    assert entry is not None
    assert (entry.outcome, entry.wire_key, entry.attempts) == ("created", first.key + "-r1", 2)


def test_a_plan_limit_stops_the_file_and_a_later_run_finishes_it(world: ReplayWorld) -> None:
    world.sandbox.config.submission_quota = 7
    path = write_csv(world.tmp / "in.csv", HEADER, onboarding_rows(12))
    with world.client() as client:
        stopped = replay_csv(client, world.paths, path, bot_id=world.bot_id, concurrency=1)
    assert (stopped.created, stopped.pending) == (7, 5)
    assert stopped.stopped_reason is not None
    assert "plan limit reached (submissions: 7 of 7" in stopped.stopped_reason
    assert stopped.posts_sent == 8  # the eighth met the limit; the rest never left
    assert sorted(ledger_outcomes(world).values()).count("pending") == 5

    world.sandbox.config.submission_quota = None  # the next month
    with world.client() as client:
        finished = replay_csv(client, world.paths, path, bot_id=world.bot_id)
    assert (finished.created, finished.already_created, finished.posts_sent) == (5, 7, 5)
    assert len(world.created()) == 12


def test_an_unknown_column_stops_the_file_before_anything_is_sent(world: ReplayWorld) -> None:
    path = write_csv(
        world.tmp / "in.csv", (*HEADER, "shoe_size"), [[*r, "9"] for r in onboarding_rows(2)]
    )
    with (
        world.client() as client,
        pytest.raises(CsvFileError, match="column 'shoe_size' matches no field"),
    ):
        replay_csv(client, world.paths, path, bot_id=world.bot_id)
    assert world.posts() == 0
    with world.client() as client:
        report = replay_csv(
            client, world.paths, path, bot_id=world.bot_id, ignore_unknown_columns=True
        )
    assert report.ignored_columns == ("shoe_size",)
    assert report.created == 2
    assert all("shoe_size" not in sub["data"] for sub in world.created())


def test_a_content_block_column_is_named_as_such(world: ReplayWorld) -> None:
    path = write_csv(
        world.tmp / "in.csv", (*HEADER, "welcome"), [[*r, "hi"] for r in onboarding_rows(1)]
    )
    with (
        world.client() as client,
        pytest.raises(CsvFileError, match="'welcome' is a content block"),
    ):
        replay_csv(client, world.paths, path, bot_id=world.bot_id)


def test_an_unknown_default_bot_stops_the_file(world: ReplayWorld) -> None:
    path = write_csv(world.tmp / "in.csv", HEADER, onboarding_rows(1))
    with world.client() as client, pytest.raises(CsvFileError, match="intake bot 'nope' not found"):
        replay_csv(client, world.paths, path, bot_id="nope")


def test_one_file_can_feed_several_bots(world: ReplayWorld) -> None:
    bots = {bot["name"]: bot["id"] for bot in world.sandbox.truth_bots()}
    support = bots["Support Ticket"]
    header = ("_bot_id", "full_name", "email", "category", "description", "consent")
    rows = [
        ["", "Ann", "ann@example.com", "", "", "yes"],  # the default bot
        [support, "Bob", "bob@example.com", "Bug", "It broke", ""],
        ["missing-bot", "Cy", "cy@example.com", "bug", "x", ""],
        [support, "Di", "di@example.com", "bug", "x", "yes"],  # consent is not a Support field
    ]
    path = write_csv(world.tmp / "in.csv", header, rows)
    with world.client() as client:
        report = replay_csv(client, world.paths, path, bot_id=world.bot_id)
    assert report.created == 2
    assert [(p.row, p.field) for p in report.problems] == [(4, "_bot_id"), (5, "consent")]
    assert len(world.created()) == 1
    assert [sub["data"]["category"] for sub in world.created(support)] == ["bug"]


def test_a_dry_run_sends_nothing_and_writes_no_ledger(world: ReplayWorld) -> None:
    rows = onboarding_rows(4)
    rows[0][2] = "many"
    path = write_csv(world.tmp / "in.csv", HEADER, rows)
    with world.client() as client:
        report = replay_csv(client, world.paths, path, bot_id=world.bot_id, dry_run=True)
    assert (report.would_send, report.rejected, report.created, report.posts_sent) == (3, 1, 0, 0)
    assert world.posts() == 0
    assert not world.paths.state_db.exists()
    assert len(read_csv(rejects_path_for(path))) == 1  # how a dry run shows the bad rows


def test_a_row_in_doubt_for_a_day_is_held_until_forced(world: ReplayWorld) -> None:
    path = write_csv(world.tmp / "in.csv", HEADER, onboarding_rows(3))
    # The POSTs reach the server but every answer is lost: the rows are in doubt.
    world.sandbox.config.faults = FaultSpec.parse("drop=1@create_submission")
    with world.client() as client:
        lost = replay_csv(
            client,
            world.paths,
            path,
            bot_id=world.bot_id,
            concurrency=1,
            wall_clock=world.time.wall,
        )
    assert lost.stopped_reason is not None and "could not be reached" in lost.stopped_reason
    assert lost.pending == 3
    world.sandbox.config.faults = None

    world.time.advance(HOLD_AFTER_S + 1)
    with world.client() as client:
        held = replay_csv(
            client, world.paths, path, bot_id=world.bot_id, wall_clock=world.time.wall
        )
        posts = world.posts()
        forced = replay_csv(
            client, world.paths, path, bot_id=world.bot_id, force=True, wall_clock=world.time.wall
        )
    # Only the row whose POST left is in doubt; the two never sent go out now.
    assert (held.held, held.posts_sent, held.created) == (1, 2, 2)
    assert "re-run with --force" in held.problems[0].reason
    assert forced.created == 1 and world.posts() == posts + 1
    # The sandbox's clock stood still, so it still knew the key: one submission per row.
    assert len(world.created()) == 3


def test_the_ledger_lives_in_the_state_file(world: ReplayWorld) -> None:
    path = write_csv(world.tmp / "in.csv", HEADER, onboarding_rows(2))
    with world.client() as client:
        replay_csv(client, world.paths, path, bot_id=world.bot_id)
    conn = sqlite3.connect(world.paths.state_db)
    rows = conn.execute(
        "select row_number, outcome, attempts, submission_id is not null, request_id like 'req_%'"
        " from replay_ledger order by row_number"
    ).fetchall()
    conn.close()
    assert rows == [(2, "created", 1, 1, 1), (3, "created", 1, 1, 1)]


def test_settled_files_are_the_ones_that_stopped_changing(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    old, fresh, rejects = (inbox / n for n in ("old.csv", "fresh.csv", "old.rejects.csv"))
    for path in (old, fresh, rejects):
        path.write_text("a\n1\n")
    now = old.stat().st_mtime + 100
    import os

    os.utime(fresh, (now - 5, now - 5))
    assert is_settled(old, now, 30) and not is_settled(fresh, now, 30)
    assert not is_settled(inbox / "gone.csv", now, 30)
    assert inbox_files(inbox, now, 30) == [old]


def test_the_bundled_example_fits_the_seeded_onboarding_bot(world: ReplayWorld) -> None:
    import shutil

    import iozen_etl

    example = Path(iozen_etl.__file__).parent / "examples" / "submissions.csv"
    path = Path(shutil.copy(example, world.tmp / "submissions.csv"))
    with world.client() as client:
        report = replay_csv(client, world.paths, path, bot_id=world.bot_id)
    # One row is wrong on purpose, so the demo shows a rejection and its rejects file.
    assert (report.created, report.rejected) == (5, 1)
    assert [(p.row, p.field) for p in report.problems] == [(7, "team_size")]
    assert rejects_path_for(path).exists()
