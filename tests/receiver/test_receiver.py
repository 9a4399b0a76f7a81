"""The webhook receiver: deliveries signed as the sandbox (ioZen's stand-in) signs them, sent
over HTTP to the app served by uvicorn on loopback, kept in a real SQLite file."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iozen_etl.receiver import EventStore
from iozen_etl.receiver.app import create_app
from iozen_etl.sandbox.webhooks import signature
from tests.support.receiver import serve_receiver

SECRET = "whsec_" + "k" * 40
NOW = 1_780_000_000


def payload(event_id: str = "evt_1", event_type: str = "submission.updated") -> bytes:
    submission = {"id": "sub_1", "intake_bot_id": "bot_1", "status": "COMPLETED", "data": {}}
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": "2026-05-28T20:26:40Z",
            "data": {"submission": submission},
        }
    ).encode()


def headers(
    body: bytes,
    *,
    at: int = NOW,
    variant: str = "body",
    secret: str = SECRET,
    event_id: str = "evt_1",
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-IoZen-Event-Id": event_id,
        "X-IoZen-Event-Type": "submission.updated",
        "X-IoZen-Timestamp": str(at),
        "X-IoZen-Signature": signature(secret, body, at, variant),
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(tmp_path / "events.sqlite") as events:
        yield events


@pytest.fixture
def client(store: EventStore) -> Iterator[httpx.Client]:
    with (
        serve_receiver(create_app(SECRET, store, clock=lambda: NOW + 2)) as url,
        httpx.Client(base_url=url) as http,
    ):
        yield http


@pytest.mark.parametrize("variant", ["body", "timestamp.body"])
def test_a_signed_event_is_kept_once_under_either_signing(
    client: httpx.Client, store: EventStore, variant: str
) -> None:
    body = payload()
    first = client.post("/", content=body, headers=headers(body, variant=variant))
    assert first.status_code == 200
    assert first.json() == {"received": "evt_1", "duplicate": False}
    # ioZen redelivers until it sees 2xx, and a request can be replayed: kept once.
    again = client.post("/", content=body, headers=headers(body, variant=variant))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    (event,) = store.pending()
    assert (event.event_id, event.event_type) == ("evt_1", "submission.updated")
    assert (event.submission_id, event.intake_bot_id) == ("sub_1", "bot_1")
    assert event.body == body.decode() and event.received_at == NOW + 2


def forged(body: bytes) -> list[tuple[str, dict[str, str]]]:
    good = headers(body)
    signed_at = headers(body, variant="timestamp.body")
    unsigned = {k: v for k, v in good.items() if k != "X-IoZen-Signature"}
    untimed = {k: v for k, v in good.items() if k != "X-IoZen-Timestamp"}
    return [
        ("wrong secret", headers(body, secret="whsec_other")),
        ("unsigned", unsigned),
        ("no timestamp", untimed),
        ("stale", headers(body, at=NOW - 301)),
        ("from the future", headers(body, at=NOW + 400)),
        ("timestamp not a number", {**good, "X-IoZen-Timestamp": "yesterday"}),
        # Signed over the timestamp too, the timestamp cannot be moved. (Signed over the body
        # alone it can: the event id, kept once, is then what stops a replay.)
        ("timestamp moved", {**signed_at, "X-IoZen-Timestamp": str(NOW + 1)}),
        ("no sha256= prefix", {**good, "X-IoZen-Signature": good["X-IoZen-Signature"][7:]}),
        ("signature of another body", headers(payload("evt_2"))),
    ]


def test_unsigned_stale_and_forged_deliveries_are_refused_saying_nothing_more(
    client: httpx.Client, store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    body = payload()
    caplog.set_level(logging.WARNING, logger="iozen_etl.receiver")
    for name, sent in forged(body):
        answer = client.post("/", content=body, headers=sent)
        assert answer.status_code == 401, name
        assert answer.json() == {"error": "unauthorized"}, name
    assert store.count() == 0
    # The reasons are in the receiver's log, never the secret.
    logged = caplog.text
    assert "stale" in logged and "does not match" in logged and "unsigned" in logged
    assert SECRET not in logged


def test_malformed_and_oversized_bodies_are_refused(tmp_path: Path, store: EventStore) -> None:
    app = create_app(SECRET, store, clock=lambda: NOW, max_body=2_000)
    with serve_receiver(app) as url, httpx.Client(base_url=url) as client:
        for body in (b"{not json", b"[1, 2]", b'{"type": "x"}', "é".encode("latin-1")):
            answer = client.post("/", content=body, headers=headers(body))
            assert answer.status_code == 400, body
            assert answer.json() == {"error": "bad request"}
        # The header and the body must name the same event.
        body = payload("evt_9")
        mismatch = client.post("/", content=body, headers=headers(body, event_id="evt_8"))
        assert mismatch.status_code == 400
        big = payload() + b" " * 2_000
        assert client.post("/", content=big, headers=headers(big)).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
            yield big[:1_500]
            yield big[1_500:]

        assert client.post("/", content=chunks(), headers=headers(big)).status_code == 413
        assert client.get("/").status_code == 405
    assert store.count() == 0


def test_kept_events_survive_a_restart_and_stay_pending_until_marked_done(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.sqlite"
    with (
        EventStore(path) as store,
        serve_receiver(create_app(SECRET, store, clock=lambda: NOW)) as url,
        httpx.Client(base_url=url) as c,
    ):
        for number in range(3):
            body = payload(f"evt_{number}")
            sent = headers(body, event_id=f"evt_{number}")
            assert c.post("/", content=body, headers=sent).status_code == 200
    with EventStore(path) as reopened:
        assert [e.event_id for e in reopened.pending()] == ["evt_0", "evt_1", "evt_2"]
        reopened.mark_done(["evt_0", "evt_2"], now=NOW + 10)
    with EventStore(path) as again:
        assert [e.event_id for e in again.pending()] == ["evt_1"]
        assert again.count() == 3


def test_an_empty_secret_is_refused_at_start(store: EventStore) -> None:
    with pytest.raises(ValueError, match="secret is empty"):
        create_app("", store)
