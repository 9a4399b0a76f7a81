"""Runs under injected faults: the read path in one call, faults switched on mid-run at the
transport, a served sandbox restarted on its own port, and the warehouse's rows counted against
the truth."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from iozen_etl.api import IozenClient, RetryPolicy
from iozen_etl.api.errors import IozenError
from iozen_etl.sandbox import FaultSpec, RunningServer, Sandbox, sandbox_transport, serve
from iozen_etl.settings import DataPaths
from iozen_etl.sync.bots import sync_bots
from iozen_etl.sync.lake import Lake
from iozen_etl.sync.reports import BotsReport, SubmissionsReport
from iozen_etl.sync.state import StateStore
from iozen_etl.sync.submissions import sync_submissions
from iozen_etl.sync.webhooks import sync_webhooks
from tests.support.sandbox import SANDBOX_URL
from tests.support.truth import truth_submissions, warehouse_submissions


@dataclass
class SyncRun:
    """One sync (bots, webhooks, submissions): whether it finished, and every error it gave."""

    bots: BotsReport | None = None
    subs: SubmissionsReport | None = None
    raised: str | None = None  # an error a step raised (the step and the run stop there)
    errors: list[str] = field(default_factory=list)  # every error text, raised or reported

    @property
    def complete(self) -> bool:
        """Every step ran to its end and no bot failed or stopped."""
        return self.raised is None and not self.errors


def sync_once(client: IozenClient, paths: DataPaths) -> SyncRun:
    """The sync job's extract steps in its order (``pipeline/assets.py``): bots, whose run
    stops at the wait ceiling; webhooks; the listed bots' submissions. Never loads."""
    run = SyncRun()
    lake = Lake(paths.parquet)
    try:
        with StateStore(paths.state_db) as state:
            run.bots = sync_bots(client, lake, state)
            run.errors.extend(run.bots.detail_errors)
            if run.bots.stopped_by_wait_ceiling:
                run.raised = run.bots.wait_ceiling_error or "wait ceiling, no error given"
                run.errors.append(run.raised)
                return run
            sync_webhooks(client, lake, state)
            run.subs = sync_submissions(client, lake, state, run.bots.bots)
    except IozenError as error:
        run.raised = str(error)
        run.errors.append(run.raised)
        return run
    run.errors.extend(bot.error for bot in run.subs.bots if bot.error)
    if run.subs.wait_ceiling_error:
        run.errors.append(run.subs.wait_ceiling_error)
    unfinished = [bot.intake_bot_id for bot in run.subs.bots if bot.action in ("failed", "stopped")]
    if unfinished and not run.errors:
        run.errors.append(f"bots not finished, with no error given: {unfinished}")
    return run


class FaultsFrom(httpx.BaseTransport):
    """The sandbox in-process, whose faults become ``spec`` from the request after the
    ``after``-th one on: faults that start mid-run, once some pages are committed."""

    def __init__(self, sandbox: Sandbox, after: int, spec: FaultSpec) -> None:
        self.sandbox = sandbox
        self.after = after
        self.spec = spec
        self.sent = 0
        self._inner = sandbox_transport(sandbox)
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.sent += 1
            if self.sent > self.after:
                self.sandbox.config.faults = self.spec
        return self._inner.handle_request(request)


def sandbox_time_client(
    sandbox: Sandbox, transport: httpx.BaseTransport, retry: RetryPolicy, seed: int
) -> IozenClient:
    """A client on the sandbox's time line (waits move its clock) over ``transport``."""
    return IozenClient(
        sandbox.api_key,
        SANDBOX_URL,
        transport=transport,
        retry=retry,
        clock=sandbox.clock.monotonic,
        wall_clock=sandbox.clock.now,
        sleep=sandbox.clock.advance,
        rng=random.Random(seed),
    )


class Restartable:
    """A sandbox served on loopback that can go down and come back on the same port with the
    same world, as a restarted sandbox process would."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.server: RunningServer = serve(sandbox)
        self.port = self.server.port
        self.base_url = self.server.base_url

    def down(self) -> None:
        self.server.close()

    def up(self) -> None:
        self.server = serve(self.sandbox, port=self.port)
        assert self.server.base_url == self.base_url

    def restart(self, down_s: float) -> None:
        self.down()
        time.sleep(down_s)
        self.up()

    def close(self) -> None:
        self.server.close()


def rows_wrong(paths: DataPaths, sandbox: Sandbox) -> int:
    """Submissions the published warehouse lacks, has in excess, or holds otherwise than the API."""
    stored = warehouse_submissions(paths)
    truth = truth_submissions(sandbox)
    missing = set(truth) - set(stored)
    extra = set(stored) - set(truth)
    differ = {sid for sid in set(truth) & set(stored) if stored[sid] != truth[sid]}
    return len(missing) + len(extra) + len(differ)


def move_world(sandbox: Sandbox, rng: random.Random) -> None:
    """A minute on: new submissions on two bots, an IN_PROGRESS one completed, a new bot."""
    sandbox.advance(60)
    for bot_id in rng.sample(sandbox.bot_ids(), 2):
        sandbox.generate_submissions(bot_id, rng.randint(20, 150))
    waiting = [s for s in sandbox.truth_submissions() if s["status"] == "IN_PROGRESS"]
    if waiting:
        done = rng.choice(waiting)
        sandbox.update_submission(done["intake_bot_id"], done["id"], status="COMPLETED")
    sandbox.generate_submissions(sandbox.add_bot(f"Added {rng.randint(0, 999)}"), 30)


def created_since(sandbox: Sandbox, before: set[str]) -> list[dict[str, Any]]:
    """Submissions the sandbox holds that are not among the ids ``before``."""
    return [s for s in sandbox.truth_submissions() if s["id"] not in before]
