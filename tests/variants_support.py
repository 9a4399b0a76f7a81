"""For the end-to-end variant matrix: a client on the sandbox's clock, one pipeline run, the
world moved, and the published warehouse compared with the sandbox's ground truth."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import duckdb

from iozen_etl.api import IozenClient, RetryPolicy
from iozen_etl.sandbox import Sandbox, sandbox_transport
from iozen_etl.sandbox.timefmt import parse_iso_ms
from iozen_etl.settings import DEFAULT_IN_PROGRESS_REFRESH_LIMIT, DataPaths
from iozen_etl.sync.bots import sync_bots
from iozen_etl.sync.lake import Lake
from iozen_etl.sync.reports import BotsReport, SubmissionsReport, WebhooksReport
from iozen_etl.sync.state import StateStore
from iozen_etl.sync.submissions import sync_submissions
from iozen_etl.sync.webhooks import sync_webhooks
from iozen_etl.warehouse import LoadReport, load_warehouse, run_query

BASE_URL = "http://sandbox.test/api/v1"


def sandbox_client(sandbox: Sandbox, api_key: str | None = None) -> IozenClient:
    """A client whose waiting moves the sandbox's clock, so rate limits are waited out at once."""
    return IozenClient(
        api_key or sandbox.api_key,
        BASE_URL,
        transport=sandbox_transport(sandbox),
        # Faults at a modest rate can strike one request several times in a row.
        retry=RetryPolicy(max_attempts=10, max_total_wait=86_400.0),
        clock=sandbox.clock.monotonic,
        wall_clock=sandbox.clock.now,
        sleep=sandbox.clock.advance,
        rng=random.Random(0),
    )


@dataclass(frozen=True)
class RunReport:
    bots: BotsReport
    submissions: SubmissionsReport
    webhooks: WebhooksReport
    load: LoadReport


def run_pipeline(
    client: IozenClient,
    paths: DataPaths,
    *,
    full_refresh: bool = False,
    concurrency: int = 4,
    in_progress_refresh_limit: int = DEFAULT_IN_PROGRESS_REFRESH_LIMIT,
) -> RunReport:
    """sync_bots + sync_submissions + sync_webhooks + load_warehouse, failing on any bot error."""
    lake = Lake(paths.parquet)
    with StateStore(paths.state_db) as state:
        bots = sync_bots(client, lake, state, concurrency=concurrency)
        refresh = frozenset(bot.id for bot in bots.bots) if full_refresh else frozenset()
        subs = sync_submissions(
            client,
            lake,
            state,
            bots.bots,
            full_refresh=refresh,
            concurrency=concurrency,
            in_progress_refresh_limit=in_progress_refresh_limit,
        )
        hooks = sync_webhooks(client, lake, state)
    assert bots.detail_errors == (), bots.detail_errors
    assert not bots.stopped_by_wait_ceiling
    failed = [
        f"{b.intake_bot_id}: {b.action} {b.error}"
        for b in subs.bots
        if b.action in {"failed", "stopped"}
    ]
    assert not failed, failed
    assert not subs.stopped_by_wait_ceiling, subs.wait_ceiling_error
    return RunReport(bots, subs, hooks, load_warehouse(paths))


def move_world(sandbox: Sandbox) -> dict[str, Any]:
    """New submissions, IN_PROGRESS ones completed and edited, a new bot, an added field.

    Returns what moved, for the tests' own assertions.
    """
    sandbox.clock.advance(120)
    bots = sandbox.bot_ids()
    in_progress = [s for s in sandbox.truth_submissions() if s["status"] == "IN_PROGRESS"]
    assert len(in_progress) >= 2, "the seed should hold IN_PROGRESS submissions"
    completed, edited = in_progress[0], in_progress[-1]
    sandbox.update_submission(completed["intake_bot_id"], completed["id"], status="COMPLETED")
    sandbox.clock.advance(1)
    sandbox.update_submission(edited["intake_bot_id"], edited["id"], data={"notes": "edited"})
    sandbox.clock.advance(1)
    new_in_first = sandbox.generate_submissions(bots[0], 40)
    sandbox.add_field(bots[1], {"name": "referral_code", "type": "short_text"})
    sandbox.clock.advance(1)
    new_in_second = sandbox.generate_submissions(bots[1], 15)
    sandbox.pause_bot(bots[2])
    new_bot = sandbox.add_bot("Fresh Variant Bot")
    sandbox.clock.advance(1)
    sandbox.generate_submissions(new_bot, 25)
    sandbox.clock.advance(60)
    return {
        "completed": completed["id"],
        "edited": edited["id"],
        "new_bot": new_bot,
        "new_submissions": len(new_in_first) + len(new_in_second) + 25,
    }


class Published:
    """The published warehouse, opened read-only once for several queries."""

    def __init__(self, paths: DataPaths) -> None:
        self._con = duckdb.connect(str(paths.published_db), read_only=True)

    def __enter__(self) -> Published:
        return self

    def __exit__(self, *_: object) -> None:
        self._con.close()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._con.execute(sql).fetchall()]


def warehouse_submissions(paths: DataPaths) -> dict[str, tuple[Any, ...]]:
    sql = "select id, intake_bot_id, status, epoch_ms(updated_at), data from submissions"
    return _submissions([tuple(row) for row in run_query(paths, sql).rows])


def _submissions(rows: list[tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    assert len(rows) == len({row[0] for row in rows}), "duplicate submission ids"
    return {row[0]: (row[1], row[2], row[3], json.loads(row[4])) for row in rows}


def truth_submissions(sandbox: Sandbox) -> dict[str, tuple[Any, ...]]:
    return {
        s["id"]: (s["intake_bot_id"], s["status"], parse_iso_ms(s["updated_at"]), s["data"])
        for s in sandbox.truth_submissions()
    }


def truth_fields(bot: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(name, type) of a bot's answerable fields, in order, in either schema shape."""
    schema = bot["schema"]
    items = schema if isinstance(schema, list) else schema["fields"]
    return [(i["name"], i.get("type")) for i in items if i.get("kind", "field") == "field"]


def assert_warehouse_equals_truth(
    paths: DataPaths, sandbox: Sandbox, *, webhooks: bool = True
) -> None:
    """Same submissions (ids, bot, status, updated_at, answers), bots and fields; every live
    webhook endpoint (deleted ones are checked apart: see test_variants)."""
    with Published(paths) as published:
        _assert_equal(published, sandbox, webhooks=webhooks)


def _assert_equal(published: Published, sandbox: Sandbox, *, webhooks: bool) -> None:
    stored = _submissions(
        published.rows(
            "select id, intake_bot_id, status, epoch_ms(updated_at), data from submissions"
        )
    )
    truth = truth_submissions(sandbox)
    missing = sorted(set(truth) - set(stored))
    extra = sorted(set(stored) - set(truth))
    assert not missing, f"{len(missing)} submissions missing from the warehouse: {missing[:3]}"
    assert not extra, f"{len(extra)} submissions the API does not have: {extra[:3]}"
    wrong = {sid: (stored[sid][:3], truth[sid][:3]) for sid in truth if stored[sid] != truth[sid]}
    assert not wrong, (
        f"{len(wrong)} submissions differ (warehouse, truth): {list(wrong.items())[:3]}"
    )

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

    if webhooks:
        hooks = dict(published.rows("select id, url from webhooks"))
        live = {h["id"]: h["url"] for h in sandbox.truth_webhooks()}
        assert {key: hooks.get(key) for key in live} == live
