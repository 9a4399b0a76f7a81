"""Webhook events to the warehouse: the sandbox delivers signed events to the receiver (served
on loopback), the events sensor turns what is kept into one run, and the run fetches each named
submission by id and loads the warehouse, which then equals the sandbox's truth."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import httpx
import pytest

from iozen_etl.definitions import defs
from iozen_etl.pipeline.automation import events_run_request, webhook_events_sensor
from iozen_etl.pipeline.launch import run_sync
from iozen_etl.receiver import EventStore
from iozen_etl.receiver.app import create_app
from iozen_etl.resources import DataDirResource
from iozen_etl.sandbox import SandboxConfig
from iozen_etl.sandbox.webhooks import signature
from tests.support.receiver import free_port, serve_receiver
from tests.support.secrets import dagster_texts, scan
from tests.support.warehouse import fetch
from tests.support.worlds import ServedWorld, served_world


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextmanager
def receiving(world: ServedWorld, events: list[str]) -> Iterator[EventStore]:
    """A receiver on loopback, registered in the sandbox for ``events``; the endpoint's secret
    goes to ``SECRETS`` for the test to look for afterwards."""
    port = free_port()
    headers = {"Authorization": f"Bearer {world.sandbox.api_key}"}
    with httpx.Client(base_url=world.server.base_url, headers=headers) as api:
        url = f"http://127.0.0.1:{port}/"
        answer = api.post("/webhooks", json={"url": url, "events": events})
        secret = answer.json()["data"]["webhook"]["secret"]
    SECRETS.append(secret)
    with (
        EventStore(world.paths.webhook_events) as store,
        serve_receiver(create_app(secret, store), port=port),
    ):
        yield store


SECRETS: list[str] = []


def pending(store: EventStore) -> int:
    waiting = store.newest_pending()
    return waiting[0] if waiting else 0


def run_requested(instance: dg.DagsterInstance) -> dg.RunRequest:
    context = dg.build_sensor_context(
        instance=instance, definitions=defs, resources={"data_dir": DataDirResource()}
    )
    requests = webhook_events_sensor.evaluate_tick(context).run_requests
    assert requests is not None and len(requests) == 1, requests
    return requests[0]


def run_events(instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("events_job")
    return job.execute_in_process(instance=instance, tags=request.tags, run_config={})


def test_an_edit_to_an_old_completed_submission_reaches_the_warehouse_without_a_sync(
    world: ServedWorld,
) -> None:
    sandbox = world.sandbox
    with dg.instance_for_test() as instance, receiving(world, ["submission.updated"]) as store:
        assert run_sync(defs, instance, say=lambda line: None).success
        bot = sandbox.bot_ids()[0]
        old = next(s for s in sandbox.truth_submissions(bot) if s["status"] == "COMPLETED")
        # An edit that moves neither the bot's count nor its updated_at: paging cannot see it.
        sandbox.update_submission(bot, old["id"], data={"full_name": "Edited In ioZen"})
        wait_for(lambda: pending(store) == 1)
        assert world.warehouse_submissions() != world.truth_submissions()

        requests_before = sandbox.request_count()
        result = run_events(instance, run_requested(instance))
        assert result.success
        assert world.warehouse_submissions() == world.truth_submissions()
        # One GET for the named submission; the warehouse loaded in the same run.
        assert sandbox.request_count() - requests_before == 1
        (row,) = fetch(world.paths, "select data from submissions where id = ?", [old["id"]])
        assert "Edited In ioZen" in str(row[0])
        assert pending(store) == 0
        after = events_run_request(instance, world.paths, now=time.time())
        assert isinstance(after, dg.SkipReason)
        # The endpoint's secret reached no file of the data directory (events, lake, state,
        # warehouse) and nothing Dagster recorded.
        found = scan([SECRETS[-1]], [world.paths.root], dagster_texts(instance))
        assert found.files and found.leaks == [], found.leaks


@pytest.fixture
def unlimited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServedWorld]:
    """The pipeline's world with no rate limit: a thousand GETs in seconds, not minutes."""
    config = SandboxConfig(seed=3, bots=6, submissions_per_bot=40, real_time=True, rate_limit=10**9)
    yield from served_world(config, tmp_path, monkeypatch)


def test_a_burst_of_a_thousand_events_becomes_one_run(unlimited: ServedWorld) -> None:
    world = unlimited
    sandbox = world.sandbox
    secret = "whsec_burst_" + "x" * 32
    with dg.instance_for_test() as instance, EventStore(world.paths.webhook_events) as store:
        assert run_sync(defs, instance, say=lambda line: None).success
        made = [
            (bot, sub_id)
            for bot in sandbox.bot_ids()[:4]
            for sub_id in sandbox.generate_submissions(bot, 250, status="COMPLETED")
        ]
        # Delivered as ioZen would (signed, one request each) over one kept-alive connection.
        with (
            serve_receiver(create_app(secret, store)) as url,
            httpx.Client(base_url=url) as http,
        ):
            for number, (bot, sub_id) in enumerate(made):
                body = json.dumps(
                    {
                        "id": f"evt_{number}",
                        "type": "submission.completed",
                        "created_at": "2026-12-07T00:00:00Z",
                        "data": {"submission": {"id": sub_id, "intake_bot_id": bot}},
                    }
                ).encode()
                at = int(time.time())
                sent = {
                    "X-IoZen-Timestamp": str(at),
                    "X-IoZen-Signature": signature(secret, body, at),
                }
                assert http.post("/", content=body, headers=sent).status_code == 200
        assert pending(store) == 1_000
        result = run_events(instance, run_requested(instance))
        assert result.success
        assert pending(store) == 0
        assert len(instance.get_runs(dg.RunsFilter(job_name="events_job"))) == 1
        assert world.warehouse_submissions() == world.truth_submissions()
        materialization = result.asset_materializations_for_node("submission_events")[0]
        facts = {k: v.value for k, v in materialization.metadata.items()}
        assert facts["events"] == facts["events_done"] == facts["submissions_fetched"] == 1_000


def test_a_gone_submission_is_recorded_and_a_status_change_refreshes_its_bot(
    world: ServedWorld,
) -> None:
    sandbox = world.sandbox
    events = ["submission.updated", "intake-bot.status-changed"]
    with dg.instance_for_test() as instance, receiving(world, events) as store:
        assert run_sync(defs, instance, say=lambda line: None).success
        bot, other = sandbox.bot_ids()[:2]
        doomed = sandbox.truth_submissions(bot)[0]["id"]
        sandbox.update_submission(bot, doomed, data={"full_name": "Soon Gone"})
        sandbox.pause_bot(other)
        wait_for(lambda: pending(store) == 2)
        sandbox.delete_bot(bot)  # its submissions answer 404 from now on
        result = run_events(instance, run_requested(instance))
        assert result.success
        materialization = result.asset_materializations_for_node("submission_events")[0]
        facts = {k: v.value for k, v in materialization.metadata.items()}
        assert (facts["submissions_gone"], facts["bots_refreshed"]) == (1, 1)
        assert pending(store) == 0  # the gone one is done, never retried
        statuses = dict(fetch(world.paths, "select id, status from intake_bots"))
        assert statuses[other] == "PAUSED"
