"""``iozen-etl webhooks``: endpoints managed against the served sandbox, and the receiver
command taking the sandbox's real deliveries, killed and started again."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iozen_etl.cli import main
from iozen_etl.receiver import EventStore
from iozen_etl.sandbox import RunningServer, Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths
from tests.support.receiver import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningServer]:
    sandbox = Sandbox(SandboxConfig(seed=5, bots=2, submissions_per_bot=3, real_time=True))
    server = serve(sandbox, webhook_interval_s=0.05)
    monkeypatch.setenv("IOZEN_API_KEY", sandbox.api_key)
    monkeypatch.setenv("IOZEN_BASE_URL", server.base_url)
    monkeypatch.setenv("IOZEN_DATA_DIR", str(tmp_path / "data"))
    yield server
    server.close()


def test_endpoints_are_created_listed_and_deleted_and_the_secret_is_shown_once(
    served: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_file = tmp_path / "hook.secret"
    url = "https://hooks.example.com/iozen"
    assert main(["webhooks", "create", url, "--secret-file", str(secret_file)]) == 0
    (hook,) = served.sandbox.truth_webhooks()
    # That it is the endpoint's secret, the receiver test below shows: it checks the
    # sandbox's signatures with this file.
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    created = capsys.readouterr()
    assert secret not in created.out + created.err
    assert hook["id"] in created.out and "submission.completed" in created.out

    # Without a file the secret is printed, once; a second file is never overwritten.
    assert main(["webhooks", "create", url + "/2", "--events", "submission.updated"]) == 0
    lines = capsys.readouterr().out.splitlines()
    second = next(h for h in served.sandbox.truth_webhooks() if h["url"].endswith("/2"))
    assert "IOZEN_WEBHOOK_SECRET" in lines[1]
    second_secret = lines[2]
    assert len(second_secret) >= 32 and second_secret != secret
    assert main(["webhooks", "create", url, "--secret-file", str(secret_file)]) == 2
    assert "exists" in capsys.readouterr().err
    assert len(served.sandbox.truth_webhooks()) == 2

    assert main(["webhooks", "list"]) == 0
    listed = capsys.readouterr().out
    assert hook["id"] in listed and second["id"] in listed
    assert secret not in listed and second_secret not in listed

    assert main(["webhooks", "delete", hook["id"]]) == 0
    assert [h["id"] for h in served.sandbox.truth_webhooks()] == [second["id"]]
    # A refusal names the request, never the key.
    assert main(["webhooks", "delete", hook["id"]]) == 1
    refused = capsys.readouterr().err
    assert "404" in refused or "not found" in refused.lower()
    assert served.sandbox.api_key not in refused


def start_receiver(port: int, secret_file: Path, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "IOZEN_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("IOZEN_WEBHOOK_SECRET", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iozen_etl",
            "webhooks",
            "serve",
            "--port",
            str(port),
            "--secret-file",
            str(secret_file),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process
        assert process.poll() is None, f"the receiver exited with {process.returncode}"
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the receiver did not start listening")


def kept_ids(data_dir: Path) -> set[str]:
    with EventStore(DataPaths(data_dir).webhook_events) as store:
        return {event.event_id for event in store.pending()}


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_the_receiver_keeps_real_deliveries_across_a_kill(
    served: RunningServer, tmp_path: Path
) -> None:
    sandbox = served.sandbox
    data_dir = tmp_path / "data"
    port = free_port()
    secret_file = tmp_path / "hook.secret"
    assert (
        main(["webhooks", "create", f"http://127.0.0.1:{port}/", "--secret-file", str(secret_file)])
        == 0
    )
    receiver = start_receiver(port, secret_file, data_dir)
    bot = sandbox.bot_ids()[0]
    sandbox.generate_submissions(bot, 3, status="COMPLETED")
    assert wait_for(lambda: len(kept_ids(data_dir)) == 3), kept_ids(data_dir)
    accepted = {d.event_id for d in sandbox.deliveries() if d.ok}
    assert accepted == kept_ids(data_dir)

    # Killed without warning: every event it answered 2xx is still kept; what arrives while it
    # is down is delivered again by ioZen's retries once it is back.
    receiver.send_signal(signal.SIGKILL)
    receiver.wait(10)
    sandbox.generate_submissions(bot, 2, status="COMPLETED")
    time.sleep(0.3)
    assert len(kept_ids(data_dir)) == 3
    receiver = start_receiver(port, secret_file, data_dir)
    try:
        sandbox.advance(120)  # past the sandbox's retry backoff
        assert wait_for(lambda: len(kept_ids(data_dir)) == 5), kept_ids(data_dir)
        assert {d.event_id for d in sandbox.deliveries() if d.ok} == kept_ids(data_dir)
    finally:
        receiver.terminate()
        receiver.wait(10)
