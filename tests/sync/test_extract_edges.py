"""The engine against servers that misbehave in ways the sandbox's switches do not cover:
hostile bot ids, out-of-order pages, forgotten cursors (faked at the transport)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any
from urllib.parse import quote

import httpx

from iozen_etl.api import RetryPolicy
from iozen_etl.pipeline.reporting import run_totals
from iozen_etl.sandbox import Sandbox, SandboxConfig, sandbox_transport
from iozen_etl.sync.state import RESCAN_STREAM, SUBMISSIONS_STREAM, StateStore
from tests.support.lake import read_table
from tests.support.sandbox import fake_time_client
from tests.support.sync import Workspace, in_progress_counts
from tests.support.truth import assert_lake_matches_truth, lake_submissions, truth_submissions
from tests.support.wire import rewrite_json

UNLIMITED = 10**9
# A bare ".." is left out here: httpx resolves it out of the URL before the request is sent (the
# client's concern); the lake's own handling of it is tested in test_lake.py.
HOSTILE = ["../../escape", "a/../../b", "nul\x00", "x" * 300, "ü/..", "~/.ssh"]


def _swap_strings(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return mapping.get(value, value)
    if isinstance(value, list):
        return [_swap_strings(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _swap_strings(v, mapping) for k, v in value.items()}
    return value


def test_bot_ids_that_try_to_escape_the_data_directory(tmp_path):
    box = Sandbox(SandboxConfig(rate_limit=UNLIMITED, bots=len(HOSTILE), submissions_per_bot=30))
    real = box.bot_ids()
    to_hostile = dict(zip(real, HOSTILE, strict=True))
    to_real = {quote(h, safe=""): r for r, h in to_hostile.items()}

    def on_request(request: httpx.Request) -> httpx.Request:
        path = request.url.raw_path.decode("ascii")
        for hostile, real_id in to_real.items():
            path = path.replace(f"/{hostile}/", f"/{real_id}/").replace(
                f"/{hostile}?", f"/{real_id}?"
            )
            if path.endswith(f"/{hostile}"):
                path = path[: -len(hostile)] + real_id
        return httpx.Request(
            request.method, request.url.copy_with(raw_path=path.encode()), headers=request.headers
        )

    transport = rewrite_json(
        sandbox_transport(box), on_request, lambda _, body: _swap_strings(body, to_hostile)
    )
    data_dir = tmp_path / "data"
    work = Workspace(data_dir)
    _, subs = work.sync(fake_time_client(box, transport=transport))

    assert subs.count("synced") == len(HOSTILE), [b.error for b in subs.bots]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    for path in data_dir.rglob("*"):
        assert path.resolve().is_relative_to(data_dir.resolve())
    truth = {sid: (to_hostile[bot], *rest) for sid, (bot, *rest) in truth_submissions(box).items()}
    assert lake_submissions(data_dir) == truth
    stored_bots = set(read_table(data_dir, "intake_bot_fields")["intake_bot_id"].to_pylist())
    assert stored_bots == set(HOSTILE)


class Reorder:
    """Reverses the submissions of every list page while ``on`` is set (a server whose order is
    not ascending; docs/decisions.md #5)."""

    def __init__(self) -> None:
        self.on = False

    def __call__(self, request: httpx.Request, body: Any) -> Any:
        data = body.get("data") if isinstance(body, dict) else None
        if self.on and isinstance(data, dict) and isinstance(data.get("submissions"), list):
            data["submissions"].reverse()
        return body


def test_an_out_of_order_server_makes_the_bot_rescan_and_the_lake_stays_right(tmp_path):
    # Nothing IN_PROGRESS: the incremental run reads from the stored resume point, not before.
    box = Sandbox(
        SandboxConfig(rate_limit=UNLIMITED, bots=2, submissions_per_bot=150, in_progress_share=0)
    )
    reorder = Reorder()
    client = fake_time_client(box, transport=rewrite_json(sandbox_transport(box), None, reorder))
    work = Workspace(tmp_path)
    work.sync(client)
    target = box.bot_ids()[0]
    with StateStore(work.paths.state_db) as state:
        before = state.get(SUBMISSIONS_STREAM, target)
    assert before is not None and before.resume_point is not None

    reorder.on = True
    box.generate_submissions(target, 230)
    _, subs = work.sync(client)

    report = next(b for b in subs.bots if b.intake_bot_id == target)
    assert report.rescan == "out_of_order" and report.rescan_finished
    assert report.rows_rescanned == len(box.truth_submissions(target))
    assert_lake_matches_truth(tmp_path, box)
    with StateStore(work.paths.state_db) as state:
        after = state.get(SUBMISSIONS_STREAM, target)
        assert state.get(RESCAN_STREAM, target) is None
    assert after is not None and after.needs_rescan == "out_of_order"

    # Still out of order and changed again: the next run rescans from the start once more.
    box.generate_submissions(target, 10)
    _, subs = work.sync(client)
    report = next(b for b in subs.bots if b.intake_bot_id == target)
    assert report.rescan == "out_of_order"
    assert_lake_matches_truth(tmp_path, box)


def test_a_forgotten_resume_point_falls_back_to_a_rescan(tmp_path):
    box = Sandbox(
        SandboxConfig(rate_limit=UNLIMITED, bots=2, submissions_per_bot=150, in_progress_share=0)
    )
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    target = box.bot_ids()[1]
    # The server no longer knows the stored cursor, nor the one of the page before it.
    with sqlite3.connect(work.paths.state_db) as db:
        db.execute(
            "UPDATE sync_state SET resume_point = 'gone1', page_start = 'gone0' "
            "WHERE stream = ? AND intake_bot_id = ?",
            (SUBMISSIONS_STREAM, target),
        )
    box.generate_submissions(target, 20)
    _, subs = work.sync(fake_time_client(box))
    report = next(b for b in subs.bots if b.intake_bot_id == target)
    assert report.rescan == "cursor_rejected" and report.resume_fallback
    assert report.resume_point_before == "gone1"
    assert report.resume_point_after == box.truth_submissions(target)[-1]["id"]
    assert_lake_matches_truth(tmp_path, box)


def test_in_progress_refresh_is_bounded_per_run(tmp_path):
    # Three bots of one page each: re-reading a bot's page (1 request) beats a GET per row.
    box = Sandbox(SandboxConfig(rate_limit=UNLIMITED, bots=3, submissions_per_bot=60))
    work = Workspace(tmp_path)
    work.sync(fake_time_client(box))
    waiting = [s for s in box.truth_submissions() if s["status"] == "IN_PROGRESS"]
    assert len({s["intake_bot_id"] for s in waiting}) == 3
    box.clock.advance(30)
    for item in waiting:
        box.update_submission(item["intake_bot_id"], item["id"], status="COMPLETED")
    gets, pages = box.request_count("submission"), box.request_count("submissions")
    _, subs = work.sync(fake_time_client(box), in_progress_refresh_limit=1)
    # One request of budget: one bot's page; the other bots' rows wait, counted as unchecked.
    assert box.request_count("submission") == gets
    assert box.request_count("submissions") - pages == 1
    checked = [b for b in subs.bots if b.refreshed]
    assert len(checked) == 1 and checked[0].refresh_completed == checked[0].refreshed
    assert subs.total("in_progress_unchecked") == len(waiting) - checked[0].refreshed
    # The next runs take the bots checked longest ago, one at a time, until none is left.
    rounds = 0
    while subs.total("in_progress_unchecked"):
        _, subs = work.sync(fake_time_client(box), in_progress_refresh_limit=1)
        rounds += 1
    assert rounds == 2
    assert_lake_matches_truth(tmp_path, box)
    with StateStore(work.paths.state_db) as state:
        assert in_progress_counts(state) == {}
    assert json.dumps(run_totals(subs))  # the run's totals are plain JSON


def test_an_interrupted_full_refresh_continues_on_the_next_run(tmp_path):
    box = Sandbox(SandboxConfig(rate_limit=UNLIMITED, bots=1, submissions_per_bot=450))
    target = box.bot_ids()[0]
    total = len(box.truth_submissions(target))
    inner = sandbox_transport(box)
    budget = {"pages": 10**9}

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/submissions"):
            if budget["pages"] <= 0:
                return httpx.Response(503, text="maintenance", request=request)
            budget["pages"] -= 1
        response: httpx.Response = inner.handle_request(request)
        return response

    client = fake_time_client(
        box, transport=httpx.MockTransport(flaky), retry=RetryPolicy(max_attempts=1)
    )
    work = Workspace(tmp_path)
    work.sync(client)
    with StateStore(work.paths.state_db) as state:
        live_before = state.get(SUBMISSIONS_STREAM, target)

    budget["pages"] = 2  # the full refresh gets two pages, then the server goes away
    _, first = work.sync(client, full_refresh={target})
    report = first.bots[0]
    assert report.action == "failed" and report.rescan == "full_refresh"
    assert report.rows_rescanned == 200 and not report.rescan_finished
    with StateStore(work.paths.state_db) as state:
        assert state.get(RESCAN_STREAM, target) is not None
        assert state.get(SUBMISSIONS_STREAM, target) == live_before

    budget["pages"] = 10**9
    _, second = work.sync(client)  # no full refresh asked: the unfinished one continues
    report = second.bots[0]
    assert report.rescan == "full_refresh" and report.rescan_finished
    assert report.rows_rescanned == total - 200
    assert_lake_matches_truth(tmp_path, box)
