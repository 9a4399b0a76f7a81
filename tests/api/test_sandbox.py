"""The client on the in-process sandbox: ground truth, the API variants, faults, the budget."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from iozen_etl.api import (
    AuthenticationRequired,
    FeatureNotAvailable,
    IdempotencyConflict,
    InsufficientScopes,
    IozenClient,
    PlanLimitExceeded,
    RateBudget,
    ResourceNotFound,
    RetryPolicy,
    ValidationFailed,
)
from iozen_etl.sandbox import FaultSpec, Sandbox, SandboxConfig
from tests.support.sandbox import sandbox_clock_client


def all_submissions(client: IozenClient, bot_id: str) -> list[Any]:
    return [item for page in client.iter_submission_pages(bot_id) for item in page.items]


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(SandboxConfig(seed=11, bots=4, submissions_per_bot=120))


def test_listing_matches_the_ground_truth(sandbox: Sandbox) -> None:
    with sandbox_clock_client(sandbox, seed=3) as client:
        bots = [bot for page in client.iter_intake_bot_pages() for bot in page.items]
        assert [bot.id for bot in bots] == [bot["id"] for bot in sandbox.truth_bots()]
        for bot in bots:
            pages = list(client.iter_submission_pages(bot.id))
            assert all(page.in_order for page in pages)
            truth = sandbox.truth_submissions(bot.id)
            got = [item for page in pages for item in page.items]
            assert [(s.id, dict(s.data), s.status, s.updated_at) for s in got] == [
                (t["id"], t["data"], t["status"], t["updated_at"]) for t in truth
            ]
            assert pages[-1].resume_point == (truth[-1]["id"] if truth else None)
            assert pages[0].schema is not None
        assert client.stats.throttled == 0


def test_details_match_the_ground_truth(sandbox: Sandbox) -> None:
    truth_bot = sandbox.truth_bots()[0]
    with sandbox_clock_client(sandbox, seed=3) as client:
        detail = client.get_intake_bot(truth_bot["id"])
        assert detail.schema is not None and detail.schema_shape == "fields"
        assert [item.name for item in detail.schema] == [
            i["name"] for i in truth_bot["schema"]["fields"]
        ]
        sub = sandbox.truth_submissions(truth_bot["id"])[0]
        got = client.get_submission(truth_bot["id"], sub["id"])
        truth_detail = sandbox.truth_submission(truth_bot["id"], sub["id"])
        assert got.messages is not None
        assert [m.content for m in got.messages] == [m["content"] for m in truth_detail["messages"]]
        with pytest.raises(ResourceNotFound) as caught:
            client.get_submission(truth_bot["id"], "nope")
        assert caught.value.resource == "submission" and caught.value.request_id


@pytest.mark.parametrize(
    "config",
    [
        SandboxConfig(seed=2, bots=2, submissions_per_bot=5, schema_shape="legacy"),
        SandboxConfig(seed=2, bots=2, submissions_per_bot=5, bot_detail_wrapped=False),
        SandboxConfig(
            seed=2, bots=2, submissions_per_bot=5, schema_shape="legacy", bot_detail_wrapped=False
        ),
    ],
)
def test_both_bot_detail_shapes(config: SandboxConfig) -> None:
    sandbox = Sandbox(config)
    truth = sandbox.truth_bots()[0]
    with sandbox_clock_client(sandbox, seed=3) as client:
        detail = client.get_intake_bot(truth["id"])
    raw = truth["schema"] if isinstance(truth["schema"], list) else truth["schema"]["fields"]
    fields = [item["name"] for item in raw if item.get("kind", "field") in ("field", "content")]
    assert detail.schema is not None and [item.name for item in detail.schema] == fields
    assert detail.schema_shape == ("legacy" if config.schema_shape == "legacy" else "fields")


@pytest.mark.parametrize(("create_status", "delete_status"), [(200, 200), (201, 204)])
def test_create_and_delete_statuses(create_status: int, delete_status: int) -> None:
    sandbox = Sandbox(
        SandboxConfig(
            seed=3,
            bots=1,
            submissions_per_bot=0,
            create_status=create_status,
            delete_status=delete_status,
        )
    )
    bot_id = sandbox.bot_ids()[0]
    with sandbox_clock_client(sandbox, seed=3) as client:
        created = client.create_submission(bot_id, {}, status="IN_PROGRESS", idempotency_key="k1")
        again = client.create_submission(bot_id, {}, status="IN_PROGRESS", idempotency_key="k1")
        assert created.status_code == create_status and created.replayed is False
        assert again.id == created.id and again.replayed is True
        assert [s["id"] for s in sandbox.truth_submissions(bot_id)] == [created.id]
        with pytest.raises(IdempotencyConflict):
            client.create_submission(bot_id, {}, status="COMPLETED", idempotency_key="k1")
        hook = client.create_webhook("http://127.0.0.1:9/hook", ["submission.completed"])
        assert hook.secret and client.get_webhook(hook.id).secret is None
        client.delete_webhook(hook.id)
        assert all(w["id"] != hook.id for w in sandbox.truth_webhooks())


def test_opaque_cursors_and_a_rejected_resume_point() -> None:
    sandbox = Sandbox(SandboxConfig(seed=4, bots=1, submissions_per_bot=250, cursor_mode="opaque"))
    bot_id = sandbox.bot_ids()[0]
    with sandbox_clock_client(sandbox, seed=3) as client:
        pages = list(client.iter_submission_pages(bot_id))
        assert sum(len(p.items) for p in pages) == len(sandbox.truth_submissions(bot_id))
        middle = pages[0].resume_point
        assert [s.id for p in client.iter_submission_pages(bot_id, middle) for s in p.items][
            :1
        ] == [pages[1].items[0].id]
        # At the end the resume point is the last id, which is no opaque cursor: the server
        # rejects it and the caller rescans that stream (docs/decisions.md #6).
        with pytest.raises(ValidationFailed) as caught:
            list(client.iter_submission_pages(bot_id, pages[-1].resume_point))
        assert caught.value.is_cursor_error


def test_scopes_plan_and_key_errors_from_the_sandbox() -> None:
    sandbox = Sandbox(SandboxConfig(seed=5, bots=1, submissions_per_bot=1, submission_quota=1))
    bot_id = sandbox.bot_ids()[0]
    reader = sandbox.add_key(["read:intake-bots"])
    pro = sandbox.add_key(["manage:webhooks"], plan="pro")
    with (
        sandbox_clock_client(sandbox, seed=3, api_key=reader) as client,
        pytest.raises(InsufficientScopes) as scopes,
    ):
        client.list_submissions_page(bot_id)
    assert scopes.value.required == ["read:submissions"] and scopes.value.granted == [
        "read:intake-bots"
    ]
    with (
        sandbox_clock_client(sandbox, seed=3, api_key=pro) as client,
        pytest.raises(FeatureNotAvailable) as feature,
    ):
        client.list_webhooks_page()
    assert feature.value.feature == "webhooks"
    wrong = "iozen_live_" + "Z" * 32
    with (
        sandbox_clock_client(sandbox, seed=3, api_key=wrong) as client,
        pytest.raises(AuthenticationRequired) as auth,
    ):
        client.list_intake_bots_page()
    assert wrong not in str(auth.value) and wrong not in repr(auth.value)
    with sandbox_clock_client(sandbox, seed=3) as client:
        client.create_submission(bot_id, {}, status="IN_PROGRESS")
        with pytest.raises(PlanLimitExceeded) as quota:
            client.create_submission(bot_id, {}, status="IN_PROGRESS")
    assert (quota.value.current, quota.value.max) == (1, 1)


@pytest.mark.parametrize(
    "variant",
    [
        {"retry_after_in_body": True},
        {"retry_after_in_body": False, "retry_after_header": True},
        {"retry_after_in_body": False, "retry_after_header": False},
        {"retry_after_header": True, "retry_after_zero": True},
    ],
)
def test_429_variants_are_waited_out(variant: dict[str, Any]) -> None:
    # Another client on the same key (its own process, its own budget) spends the window first,
    # so this client's first request meets a real 429 before its budget has seen any header.
    sandbox = Sandbox(
        SandboxConfig(
            seed=6, bots=1, submissions_per_bot=300, rate_limit=2, window_s=5.0, **variant
        )
    )
    bot_id = sandbox.bot_ids()[0]
    with sandbox_clock_client(sandbox, seed=3) as neighbour:
        neighbour.list_intake_bots_page()
        neighbour.list_intake_bots_page()
    with sandbox_clock_client(sandbox, seed=3, retry=RetryPolicy(max_attempts=4)) as client:
        got = all_submissions(client, bot_id)
    assert len(got) == len(sandbox.truth_submissions(bot_id))
    assert client.stats.throttled == 1  # after it the budget knew, and paced the rest
    assert client.stats.seconds_waited >= 1.0  # Retry-After: 0 still waits the floor


def test_every_fault_the_sandbox_injects_is_survived_on_reads() -> None:
    faults = FaultSpec.parse("5xx=0.1,429=0.05:2,drop=0.08,truncate=0.08,html=0.08")
    sandbox = Sandbox(SandboxConfig(seed=7, bots=3, submissions_per_bot=200, faults=faults))
    with sandbox_clock_client(sandbox, seed=3, retry=RetryPolicy(max_attempts=10)) as client:
        for bot_id in sandbox.bot_ids() * 5:
            got = all_submissions(client, bot_id)
            assert [s.id for s in got] == [t["id"] for t in sandbox.truth_submissions(bot_id)]
            assert client.get_intake_bot(bot_id).schema
        kinds = client.stats.snapshot()
    for kind in ("errors.http_500", "errors.connection", "errors.malformed", "errors.rate_limited"):
        assert kinds.get(kind, 0) >= 1, kinds


def test_faulty_posts_create_each_submission_exactly_once() -> None:
    faults = FaultSpec.parse("5xx=0.15,drop=0.15,truncate=0.1,html=0.1")
    sandbox = Sandbox(SandboxConfig(seed=8, bots=1, submissions_per_bot=0, faults=faults))
    bot_id = sandbox.bot_ids()[0]
    with sandbox_clock_client(sandbox, seed=3, retry=RetryPolicy(max_attempts=12)) as client:
        made = [client.create_submission(bot_id, {}, status="IN_PROGRESS").id for _ in range(40)]
        assert client.stats.retries > 0
    assert sorted(made) == sorted(s["id"] for s in sandbox.truth_submissions(bot_id))
    assert len(set(made)) == 40


def test_steady_state_listing_stays_inside_the_budget_and_uses_it() -> None:
    # A frozen sandbox clock that moves only when the client waits (or a page is handled): the
    # budget alone sets the pace. 40 requests per 10 s window; count the pages fetched in three
    # windows, where no client can fetch more than 3 x 40.
    limit, window, windows = 40, 10.0, 3
    sandbox = Sandbox(
        SandboxConfig(seed=9, bots=1, submissions_per_bot=13_000, rate_limit=limit, window_s=window)
    )
    bot_id = sandbox.bot_ids()[0]
    budget = RateBudget(
        window_s=window,
        clock=sandbox.clock.monotonic,
        wall_clock=sandbox.clock.now,
        sleep=sandbox.clock.advance,
    )
    deadline = sandbox.clock.now() + windows * window
    pages = 0
    with sandbox_clock_client(sandbox, seed=3, budget=budget) as client:
        for _ in client.iter_submission_pages(bot_id):
            if sandbox.clock.now() >= deadline:
                break
            pages += 1
            sandbox.clock.advance(0.01)  # the time a page takes to handle
    assert client.stats.throttled == 0 and client.stats.retries == 0
    share = pages / (limit * windows)
    assert 0.9 <= share <= 1.0, (pages, share)


def test_concurrent_streams_share_one_client() -> None:
    sandbox = Sandbox(SandboxConfig(seed=10, bots=6, submissions_per_bot=300))
    results: dict[str, list[str]] = {}
    with sandbox_clock_client(sandbox, seed=3) as client:

        def stream(bot_id: str) -> None:
            results[bot_id] = [s.id for s in all_submissions(client, bot_id)]

        threads = [threading.Thread(target=stream, args=(b,)) for b in sandbox.bot_ids()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        hooks = [hook for page in client.iter_webhook_pages() for hook in page.items]
    assert [h.id for h in hooks] == [w["id"] for w in sandbox.truth_webhooks()]
    for bot_id in sandbox.bot_ids():
        assert results[bot_id] == [t["id"] for t in sandbox.truth_submissions(bot_id)]
    assert client.stats.throttled == 0
