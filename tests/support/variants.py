"""For the end-to-end variant matrix: a client on the sandbox's clock, one pipeline run, and
the world moved (the comparison with the ground truth is ``tests.support.truth``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iozen_etl.api import IozenClient, RetryPolicy
from iozen_etl.sandbox import Sandbox
from iozen_etl.settings import DEFAULT_IN_PROGRESS_REFRESH_LIMIT, DataPaths
from iozen_etl.sync.bots import sync_bots
from iozen_etl.sync.lake import Lake
from iozen_etl.sync.reports import BotsReport, SubmissionsReport, WebhooksReport
from iozen_etl.sync.state import StateStore
from iozen_etl.sync.submissions import sync_submissions
from iozen_etl.sync.webhooks import sync_webhooks
from iozen_etl.warehouse import LoadReport, load_warehouse
from tests.support.sandbox import sandbox_clock_client

# Faults at a modest rate can strike one request several times in a row.
FAULT_TOLERANT_RETRY = RetryPolicy(max_attempts=10, max_total_wait=86_400.0)


def variants_client(sandbox: Sandbox, api_key: str | None = None) -> IozenClient:
    """A client on the sandbox's clock that rides out the variants' injected faults."""
    return sandbox_clock_client(sandbox, api_key, retry=FAULT_TOLERANT_RETRY)


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
    lake = Lake.open(paths.lake)
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
