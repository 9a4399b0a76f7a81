"""The replay command end to end: a subprocess against a sandbox served on loopback."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from iozen_etl.cli import main
from iozen_etl.commands.replay import ProgressLine
from iozen_etl.replay.ledger import Ledger
from iozen_etl.replay.report import ReplayProgress
from iozen_etl.sandbox import RunningServer, Sandbox, SandboxConfig, serve
from tests.support.csv import HEADER, onboarding_rows, write_csv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served() -> Iterator[RunningServer]:
    # Latency keeps requests in the air, so a kill lands mid-file with POSTs outstanding.
    server = serve(Sandbox(SandboxConfig(seed=3, bots=2, submissions_per_bot=1, latency_ms=15)))
    yield server
    server.close()


def onboarding_bot(sandbox: Sandbox) -> str:
    return str(next(b["id"] for b in sandbox.truth_bots() if b["name"] == "Customer Onboarding"))


def replay_process(server: RunningServer, data_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "IOZEN_API_KEY": server.sandbox.api_key,
        "IOZEN_BASE_URL": server.base_url,
        "IOZEN_DATA_DIR": str(data_dir),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "iozen_etl", "replay", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def made_by_replay(sandbox: Sandbox, bot_id: str, seeded: set[str]) -> list[dict[str, object]]:
    return [s for s in sandbox.truth_submissions(bot_id) if s["id"] not in seeded]


@pytest.mark.slow
def test_a_replay_killed_mid_file_and_rerun_creates_each_row_once(
    served: RunningServer, tmp_path: Path
) -> None:
    sandbox = served.sandbox
    bot = onboarding_bot(sandbox)
    seeded = {str(s["id"]) for s in sandbox.truth_submissions(bot)}
    rows = 150
    path = write_csv(tmp_path / "in.csv", HEADER, onboarding_rows(rows))
    data_dir = tmp_path / "data"

    first = replay_process(served, data_dir, str(path), "--bot", bot, "--concurrency", "4")
    while len(made_by_replay(sandbox, bot, seeded)) < 40:
        try:
            first.wait(timeout=0.01)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"the replay finished before it could be killed: {first.communicate()}")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL

    with Ledger(data_dir / "state.sqlite") as ledger:
        at_kill = [entry.outcome for entry in ledger.entries()]
    recorded_created = at_kill.count("created")
    assert 0 < recorded_created < rows
    assert "pending" in at_kill  # POSTs were in the air: sent, or about to be, and unanswered
    posts_before = sandbox.request_count("create_submission", "POST")

    second = replay_process(served, data_dir, str(path), "--bot", bot, "--concurrency", "4")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, out + err

    made = made_by_replay(sandbox, bot, seeded)
    assert sorted(s["data"]["team_size"] for s in made) == list(range(rows))  # type: ignore[index]
    # The re-run sent the rows not recorded as created: the pending ones again with their key
    # (the server answered with what it had made), the rest for the first time. A POST the
    # kill cut off mid-send may add one more each (re-keyed, see test_replay), and requests
    # of the killed process may still have been landing when posts_before was read.
    resent = sandbox.request_count("create_submission", "POST") - posts_before
    assert rows - recorded_created - at_kill.count("pending") <= resent
    assert resent <= rows - recorded_created + 2 * at_kill.count("pending")
    assert f"already created {recorded_created}" in out
    with Ledger(data_dir / "state.sqlite") as ledger:
        assert {entry.outcome for entry in ledger.entries()} == {"created"}


@pytest.mark.slow
def test_a_plan_limit_exits_non_zero_with_one_line(served: RunningServer, tmp_path: Path) -> None:
    served.sandbox.config.submission_quota = 3
    bot = onboarding_bot(served.sandbox)
    path = write_csv(tmp_path / "in.csv", HEADER, onboarding_rows(6))
    proc = replay_process(served, tmp_path / "data", str(path), "--bot", bot, "--concurrency", "1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    stopped = [line for line in err.splitlines() if "stopped:" in line]
    assert len(stopped) == 1
    assert "plan limit reached (submissions: 3 of 3" in stopped[0]
    assert "created 3" in out and "pending 3" in out
    assert served.sandbox.api_key not in out + err


@pytest.mark.slow
def test_a_bad_file_exits_2_having_sent_nothing(served: RunningServer, tmp_path: Path) -> None:
    bot = onboarding_bot(served.sandbox)
    path = write_csv(tmp_path / "in.csv", (*HEADER, "shoe_size"), [[*onboarding_rows(1)[0], "9"]])
    proc = replay_process(served, tmp_path / "data", str(path), "--bot", bot)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "column 'shoe_size' matches no field" in err
    assert served.sandbox.request_count("create_submission", "POST") == 0


def test_a_missing_api_key_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("IOZEN_API_KEY", raising=False)
    assert main(["replay", str(tmp_path / "in.csv"), "--bot", "b"]) == 2
    assert "IOZEN_API_KEY is not set" in capsys.readouterr().err


def progress(done: int) -> ReplayProgress:
    return ReplayProgress(10, done, done, 0, 0, 0, 0, 0)


def test_progress_off_a_terminal_is_a_line_now_and_then_plus_the_last() -> None:
    now = [0.0]
    stream = io.StringIO()
    line = ProgressLine(stream, every_s=5.0, clock=lambda: now[0])
    for done in range(1, 11):
        now[0] += 1.0
        line(progress(done))
    line.finish()
    assert stream.getvalue().splitlines() == [
        "replay: 5/10 rows, created 5, already 0, rejected 0, conflicts 0, pending 0, held 0",
        "replay: 10/10 rows, created 10, already 0, rejected 0, conflicts 0, pending 0, held 0",
    ]
