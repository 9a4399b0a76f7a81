"""The sandbox's ground truth, and the lake and the warehouse compared with it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from iozen_etl.sandbox import Sandbox
from iozen_etl.sandbox.timefmt import parse_iso_ms
from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import run_query
from tests.support.lake import newest_by_id, read_table
from tests.support.warehouse import Published

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The newest version of every submission, the same columns from the API and from a store.
SUBMISSIONS_SQL = (
    "select id, intake_bot_id, status, epoch_us(updated_at), data, message_count from submissions"
)


class SubmissionFacts(NamedTuple):
    """What must agree between the API and the lake or the warehouse, for one submission."""

    intake_bot_id: str
    status: str
    updated_at: datetime
    data: dict[str, Any]
    message_count: int


def truth_submissions(sandbox: Sandbox) -> dict[str, SubmissionFacts]:
    return {
        s["id"]: SubmissionFacts(
            s["intake_bot_id"],
            s["status"],
            datetime.fromisoformat(s["updated_at"].replace("Z", "+00:00")).astimezone(UTC),
            s["data"],
            s["message_count"],
        )
        for s in sandbox.truth_submissions()
    }


def lake_submissions(root: Path) -> dict[str, SubmissionFacts]:
    """The newest version of each submission in the lake under the data directory ``root``."""
    rows = newest_by_id(read_table(root, "submissions"))
    return {
        sid: SubmissionFacts(
            row["intake_bot_id"],
            row["status"],
            row["updated_at"],
            json.loads(row["data"]),
            row["message_count"],
        )
        for sid, row in rows.items()
    }


def warehouse_submissions(paths: DataPaths) -> dict[str, SubmissionFacts]:
    """Every submission of the published warehouse, through the public query API."""
    return _stored_submissions([tuple(row) for row in run_query(paths, SUBMISSIONS_SQL).rows])


def _stored_submissions(rows: list[tuple[Any, ...]]) -> dict[str, SubmissionFacts]:
    assert len(rows) == len({row[0] for row in rows}), "duplicate submission ids"
    return {
        sid: SubmissionFacts(
            bot_id, status, EPOCH + timedelta(microseconds=updated_us), json.loads(data), messages
        )
        for sid, bot_id, status, updated_us, data, messages in rows
    }


def truth_fields(bot: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(name, type) of a bot's answerable fields, in order, in either schema shape."""
    schema = bot["schema"]
    items = schema if isinstance(schema, list) else schema["fields"]
    return [(i["name"], i.get("type")) for i in items if i.get("kind", "field") == "field"]


def assert_same_submissions(
    stored: dict[str, SubmissionFacts], truth: dict[str, SubmissionFacts], where: str
) -> None:
    missing = sorted(set(truth) - set(stored))
    extra = sorted(set(stored) - set(truth))
    assert not missing, f"{len(missing)} submissions missing from the {where}: {missing[:3]}"
    assert not extra, f"{len(extra)} submissions in the {where} the API does not have: {extra[:3]}"
    wrong = {sid: (stored[sid][:3], truth[sid][:3]) for sid in truth if stored[sid] != truth[sid]}
    assert not wrong, f"{len(wrong)} submissions differ ({where}, truth): {list(wrong.items())[:3]}"


def assert_lake_matches_truth(root: Path, sandbox: Sandbox) -> None:
    """The lake's newest versions are the API's submissions, and the long-form answers at each
    newest version name exactly its answers."""
    lake = lake_submissions(root)
    truth = truth_submissions(sandbox)
    assert_same_submissions(lake, truth, "lake")
    names: dict[str, set[tuple[str, int]]] = {sid: set() for sid in lake}
    for row in read_table(root, "submission_answers").to_pylist():
        if row["submission_updated_at"] == lake[row["submission_id"]].updated_at:
            names[row["submission_id"]].add((row["field_name"], row["position"]))
    for sid, facts in truth.items():
        expected = {
            (name, position)
            for name, value in facts.data.items()
            for position in range(len(value) if isinstance(value, list) else 1)
        }
        assert names[sid] == expected, f"answers of {sid} do not match its data"


def assert_warehouse_equals_truth(
    paths: DataPaths, sandbox: Sandbox, *, webhooks: bool = True
) -> None:
    """Same submissions (ids, bot, status, updated_at, answers, message count), bots and
    fields; every live webhook endpoint (deleted ones are checked apart: see test_variants)."""
    with Published(paths) as published:
        stored = _stored_submissions(published.rows(SUBMISSIONS_SQL))
        assert_same_submissions(stored, truth_submissions(sandbox), "warehouse")
        _assert_bots_and_fields(published, sandbox)
        if webhooks:
            hooks = dict(published.rows("select id, url from webhooks"))
            live = {h["id"]: h["url"] for h in sandbox.truth_webhooks()}
            assert {key: hooks.get(key) for key in live} == live


def _assert_bots_and_fields(published: Published, sandbox: Sandbox) -> None:
    truth_bots = sandbox.truth_bots()
    bots = {
        row[0]: row[1:]
        for row in published.rows(
            "select id, submission_count, status, epoch_ms(updated_at) from intake_bots"
        )
    }
    assert bots == {
        b["id"]: (b["submission_count"], b["status"], parse_iso_ms(b["updated_at"]))
        for b in truth_bots
    }
    field_rows = published.rows(
        "select intake_bot_id, name, type from intake_bot_fields "
        "where not is_content order by intake_bot_id, position",
    )
    fields: dict[str, list[tuple[str, str | None]]] = {}
    for bot_id, name, type_ in field_rows:
        fields.setdefault(bot_id, []).append((name, type_))
    assert fields == {b["id"]: truth_fields(b) for b in truth_bots}
