"""Fixtures: a small seeded sandbox and an httpx client talking to it in-process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from iozen_etl.sandbox import Sandbox, SandboxConfig
from tests.support.sandbox import client_for


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(SandboxConfig(seed=7, bots=6, submissions_per_bot=40))


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with client_for(sandbox) as http:
        yield http
