"""The sandbox over real loopback sockets, and the ``iozen-etl sandbox`` command."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from iozen_etl.sandbox import FaultSpec, Sandbox, SandboxConfig, serve, verify

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_pages_over_loopback_match_the_truth() -> None:
    sandbox = Sandbox(SandboxConfig(bots=2, submissions_per_bot=250))
    bot = max(sandbox.truth_bots(), key=lambda b: b["submission_count"])["id"]
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    with (
        serve(sandbox) as server,
        httpx.Client(base_url=server.base_url, headers=headers) as client,
    ):
        assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith(
            "/api/v1"
        )
        ids, cursor = [], None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            response = client.get(f"/intake-bots/{bot}/submissions", params=params)
            assert response.headers["X-Request-Id"].startswith("req_")
            data = response.json()["data"]
            ids += [s["id"] for s in data["submissions"]]
            cursor = data["pagination"]["next_cursor"]
            if not cursor:
                break
        big = client.post(f"/intake-bots/{bot}/submissions", content=b"{" + b" " * 2_000_000 + b"}")
        missing = client.get("/nope")
        head = client.head("/intake-bots")  # no body may follow a HEAD answer on a kept-alive line
        after_head = client.get("/intake-bots")
    assert ids == [s["id"] for s in sandbox.truth_submissions(bot)]
    assert big.status_code == 400 and missing.status_code == 404
    assert head.status_code == 404 and head.content == b""
    assert after_head.status_code == 200


def test_dropped_connection_over_loopback() -> None:
    sandbox = Sandbox(
        SandboxConfig(bots=1, submissions_per_bot=1, faults=FaultSpec.parse("drop=1@bots"))
    )
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    with (
        serve(sandbox) as server,
        httpx.Client(base_url=server.base_url, headers=headers) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/intake-bots")
        assert client.get(f"/intake-bots/{sandbox.bot_ids()[0]}").status_code == 200


class _Collect(BaseHTTPRequestHandler):
    received: queue.Queue[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.put((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]]:
    received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
    handler = type("Collect", (_Collect,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()
    thread.join()


def test_served_sandbox_delivers_webhooks_in_the_background(
    receiver: tuple[str, queue.Queue[tuple[dict[str, str], bytes]]],
) -> None:
    url, received = receiver
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=1, real_time=True))
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    with serve(sandbox, webhook_interval_s=0.05) as server:
        with httpx.Client(base_url=server.base_url, headers=headers) as client:
            hook = client.post("/webhooks", json={"url": url, "events": ["submission.completed"]})
            secret = hook.json()["data"]["webhook"]["secret"]
        sandbox.generate_submissions(sandbox.bot_ids()[0], 1, status="COMPLETED")
        delivered_headers, body = received.get(timeout=10)
    assert verify(
        secret,
        body,
        delivered_headers["X-IoZen-Signature"],
        delivered_headers["X-IoZen-Timestamp"],
        sandbox.clock.now(),
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_command_prints_url_and_key_serves_and_stops_on_signal(stop_signal: int) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iozen_etl.cli",
            "sandbox",
            "--port",
            "0",
            "--bots",
            "3",
            "--seed",
            "9",
            "--key",
            "iozen_live_onlybots0000000000000000000000=read:intake-bots",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        base_line = process.stdout.readline().strip()
        key_line = process.stdout.readline().strip()
        assert base_line.startswith("IOZEN_BASE_URL=http://127.0.0.1:")
        assert base_line.endswith("/api/v1")
        assert key_line.startswith("IOZEN_API_KEY=iozen_live_")
        base_url = base_line.split("=", 1)[1]
        key = key_line.split("=", 1)[1]
        with httpx.Client(base_url=base_url) as client:
            bots = client.get("/intake-bots", headers={"Authorization": f"Bearer {key}"})
            limited = client.get(
                f"/intake-bots/{bots.json()['data']['intake_bots'][0]['id']}/submissions",
                headers={"Authorization": "Bearer iozen_live_onlybots0000000000000000000000"},
            )
        assert len(bots.json()["data"]["intake_bots"]) == 3
        assert limited.status_code == 403
        process.send_signal(stop_signal)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_command_refuses_bad_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "iozen_etl", "sandbox", "--faults", "teapot=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "teapot" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"FOO /api/v1/intake-bots HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
        b"GET /api/v1/intake-bots HTTP/9.9\r\n\r\n",
    ],
)
def test_malformed_http_gets_an_envelope(raw: bytes) -> None:
    sandbox = Sandbox(SandboxConfig(bots=1, submissions_per_bot=1))
    with serve(sandbox) as server, socket.create_connection((server.host, server.port)) as conn:
        conn.sendall(raw)
        conn.settimeout(10)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    # A request line without a version is HTTP/0.9: the answer is the bare body.
    body = answer.partition(b"\r\n\r\n")[2] if answer.startswith(b"HTTP/1.") else answer
    assert json.loads(body)["success"] is False


def test_a_body_cut_short_is_never_handled_nor_remembered() -> None:
    """A client killed mid-body: the real server never sees that request, so neither does ours."""
    sandbox = Sandbox(SandboxConfig(seed=5, bots=1, submissions_per_bot=0, real_time=True))
    server = serve(sandbox)
    try:
        bot_id = sandbox.bot_ids()[0]
        body = json.dumps({"data": {}, "status": "IN_PROGRESS"}).encode()
        head = (
            f"POST /api/v1/intake-bots/{bot_id}/submissions HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {sandbox.api_key}\r\n"
            "Content-Type: application/json\r\nIdempotency-Key: cut-short\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(head + body[:5])
        # The same key with the whole body creates the submission (no stored 400, no 409).
        answer = httpx.post(
            f"{server.base_url}/intake-bots/{bot_id}/submissions",
            content=body,
            headers={
                "Authorization": f"Bearer {sandbox.api_key}",
                "Content-Type": "application/json",
                "Idempotency-Key": "cut-short",
            },
        )
        assert answer.status_code == 200, answer.text
        assert len(sandbox.truth_submissions(bot_id)) == 1
    finally:
        server.close()
