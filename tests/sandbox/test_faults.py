"""Fault injection: the SPEC grammar, each fault kind, route selection and determinism."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from iozen_etl.sandbox import FaultSpec, FaultSpecError, Sandbox, SandboxConfig
from iozen_etl.sandbox.config import ROUTE_NAMES
from iozen_etl.sandbox.routes import ROUTES
from tests.support.sandbox import client_for, error_of


def faulty(spec: str, **config: Any) -> Sandbox:
    return Sandbox(
        SandboxConfig(bots=2, submissions_per_bot=20, faults=FaultSpec.parse(spec), **config)
    )


def test_fault_route_names_are_the_route_table() -> None:
    # config cannot import the table (the handlers import config), so the names are checked here.
    assert tuple(route.name for route in ROUTES) == ROUTE_NAMES


def test_spec_grammar_round_trips() -> None:
    spec = FaultSpec.parse("5xx=0.1, 429=0.05:4,drop=0.02@submissions|bot,latency=50ms,html=1")
    kinds = [(rule.kind, rule.probability, rule.burst) for rule in spec.rules]
    assert kinds == [
        ("5xx", 0.1, 3),
        ("429", 0.05, 4),
        ("drop", 0.02, 3),
        ("latency", 0.0, 3),
        ("html", 1.0, 3),
    ]
    assert spec.rules[2].routes == frozenset({"submissions", "bot"})
    assert spec.rules[3].seconds == pytest.approx(0.05)
    assert FaultSpec.parse(str(spec)) == spec
    assert FaultSpec.parse("") == FaultSpec()


@pytest.mark.parametrize(
    "bad",
    [
        "5xx",
        "teapot=0.1",
        "5xx=2",
        "5xx=x",
        "drop=0.1@nowhere",
        "latency=fast",
        "429=0.1:0",
        "5xx=0.1@",
    ],
)
def test_bad_specs_say_what_is_wrong(bad: str) -> None:
    with pytest.raises(FaultSpecError):
        FaultSpec.parse(bad)


def test_5xx_is_an_internal_error_envelope_without_side_effects() -> None:
    sandbox = faulty("5xx=1@create_submission")
    bot = sandbox.bot_ids()[0]
    before = len(sandbox.truth_submissions(bot))
    with client_for(sandbox) as client:
        response = client.post(
            f"/intake-bots/{bot}/submissions", json={"data": {}, "status": "IN_PROGRESS"}
        )
        assert client.get("/intake-bots").status_code == 200  # other routes unaffected
    assert response.status_code == 500
    assert error_of(response) == {
        "code": "internal_error",
        "message": "An internal error occurred",
        "details": {},
    }
    assert len(sandbox.truth_submissions(bot)) == before


def test_429_bursts_last_their_length() -> None:
    sandbox = faulty("429=1:3@bot")
    bot = sandbox.bot_ids()[0]
    with client_for(sandbox) as client:
        statuses = [client.get(f"/intake-bots/{bot}").status_code for _ in range(3)]
        assert statuses == [429, 429, 429]
        refused = client.get(f"/intake-bots/{bot}")
    assert error_of(refused)["details"] == {"retry_after": 1}


def test_drop_keeps_the_effect_and_loses_the_answer() -> None:
    sandbox = faulty("drop=1@create_submission")
    bot = sandbox.bot_ids()[0]
    before = len(sandbox.truth_submissions(bot))
    with client_for(sandbox) as client, pytest.raises(httpx.RemoteProtocolError):
        client.post(f"/intake-bots/{bot}/submissions", json={"data": {}, "status": "IN_PROGRESS"})
    assert len(sandbox.truth_submissions(bot)) == before + 1


def test_drop_through_wsgi_transport_raises_an_httpx_error() -> None:
    sandbox = faulty("drop=1")
    transport = httpx.WSGITransport(app=sandbox)
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    with (
        httpx.Client(transport=transport, base_url="http://s/api/v1", headers=headers) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.get("/intake-bots")


def test_truncate_and_html_break_the_json() -> None:
    for spec, content_type in (
        ("truncate=1", "application/json"),
        ("html=1", "text/html; charset=utf-8"),
    ):
        sandbox = faulty(spec)
        with client_for(sandbox) as client:
            response = client.get("/intake-bots")
        assert response.status_code == 200
        assert response.headers["Content-Type"] == content_type
        with pytest.raises(ValueError):
            response.json()


def test_latency_uses_the_injected_sleep() -> None:
    slept: list[float] = []
    sandbox = Sandbox(
        SandboxConfig(
            bots=1,
            submissions_per_bot=1,
            latency_ms=20,
            faults=FaultSpec.parse("latency=30ms@bots"),
        ),
        sleep=slept.append,
    )
    with client_for(sandbox) as client:
        client.get("/intake-bots")
        client.get(f"/intake-bots/{sandbox.bot_ids()[0]}")
    assert slept == [pytest.approx(0.05), pytest.approx(0.02)]


def test_faults_are_deterministic_by_seed_and_off_by_default() -> None:
    def outcomes(seed: int) -> list[str]:
        sandbox = faulty("5xx=0.2,429=0.1:2,truncate=0.1,html=0.1,drop=0.1", seed=seed)
        results = []
        with client_for(sandbox) as client:
            for _ in range(60):
                try:
                    response = client.get("/intake-bots", params={"limit": 1})
                except httpx.RemoteProtocolError:
                    results.append("drop")
                    continue
                results.append(f"{response.status_code}:{len(response.content)}")
        return results

    first = outcomes(1)
    assert first == outcomes(1)
    assert first != outcomes(2)
    assert {"drop"} < set(first) and any(r.startswith("500") for r in first)
    plain = Sandbox(SandboxConfig(bots=1, submissions_per_bot=1))
    with client_for(plain) as client:
        assert all(client.get("/intake-bots").status_code == 200 for _ in range(50))
