"""Clients of an in-process sandbox: raw HTTP, and the ioZen client on fake or sandbox time."""

from __future__ import annotations

import random
from typing import Any

import httpx

from iozen_etl.api import IozenClient, RetryPolicy
from iozen_etl.sandbox import Sandbox, sandbox_transport
from tests.support.clock import FakeTime

SANDBOX_URL = "http://sandbox.test/api/v1"


def client_for(sandbox: Sandbox, key: str | None = None) -> httpx.Client:
    """Raw HTTP to the sandbox with a key (the sandbox's own by default; ``""`` sends none)."""
    headers = {} if key == "" else {"Authorization": f"Bearer {key or sandbox.api_key}"}
    return httpx.Client(transport=sandbox_transport(sandbox), base_url=SANDBOX_URL, headers=headers)


def fake_time_client(
    sandbox: Sandbox,
    *,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    api_key: str | None = None,
    time: FakeTime | None = None,
) -> IozenClient:
    """The ioZen client on the sandbox, waiting on ``time`` (a fresh FakeTime by default)."""
    time = time or FakeTime()
    return IozenClient(
        api_key or sandbox.api_key,
        SANDBOX_URL,
        transport=transport or sandbox_transport(sandbox),
        retry=retry,
        clock=time.clock,
        wall_clock=time.wall,
        sleep=time.sleep,
    )


def sandbox_clock_client(
    sandbox: Sandbox, api_key: str | None = None, *, seed: int = 0, **kwargs: Any
) -> IozenClient:
    """A client on the sandbox's own time line: waiting moves the sandbox's clock, nobody
    sleeps, so rate limits are waited out at once. ``kwargs`` go to ``IozenClient``."""
    return IozenClient(
        api_key or sandbox.api_key,
        SANDBOX_URL,
        transport=sandbox_transport(sandbox),
        clock=sandbox.clock.monotonic,
        wall_clock=sandbox.clock.now,
        sleep=sandbox.clock.advance,
        rng=random.Random(seed),
        **kwargs,
    )


def busiest_bot(sandbox: Sandbox) -> str:
    """The bot with the most submissions (seeded spreads are skewed)."""
    bot_id: str = max(sandbox.truth_bots(), key=lambda bot: bot["submission_count"])["id"]
    return bot_id


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error of a failure envelope, checking the envelope's shape on the way."""
    body = response.json()
    assert body["success"] is False
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    return error
