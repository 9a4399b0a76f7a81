"""Fixtures: a small seeded sandbox and an httpx client talking to it in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from iozen_etl.sandbox import Sandbox, SandboxConfig, sandbox_transport

BASE_URL = "http://sandbox.test/api/v1"


def client_for(sandbox: Sandbox, key: str | None = None) -> httpx.Client:
    headers = {} if key == "" else {"Authorization": f"Bearer {key or sandbox.api_key}"}
    return httpx.Client(transport=sandbox_transport(sandbox), base_url=BASE_URL, headers=headers)


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(SandboxConfig(seed=7, bots=6, submissions_per_bot=40))


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with client_for(sandbox) as http:
        yield http


def busiest_bot(sandbox: Sandbox) -> str:
    """The bot with the most submissions (seeded spreads are skewed)."""
    bot_id: str = max(sandbox.truth_bots(), key=lambda bot: bot["submission_count"])["id"]
    return bot_id


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["success"] is False
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    return error
