"""The write path's figures: 10,000 CSV rows replayed against a rate-limited sandbox with latency.

The sandbox runs in its own process (``iozen-etl sandbox``) on loopback, with real
time, a 100 ms answer latency (the middle of a 50-150 ms spread; the sandbox's latency is
fixed) and a sliding-window limit. The real Business limit is 500 per 60 s, at which 10,000
rows take 20 minutes; the bench keeps the limit (500) and shortens the window to 10 s
(50 requests/s), so the run takes about 200 s. At 100 ms per answer, 16 POSTs in flight could
do 160/s, so the budget, not the latency, sets the pace.

1. Share of the rate budget used: requests sent / (limit x elapsed / window), elapsed being the
   replay's wall time. A sliding window lets a client spend a whole window's allowance at once
   at the start, so the share is also given without that first window (steady state).
2. POSTs sent by a re-run of the same file: counted by the sandbox itself (target 0).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from iozen_etl.api import IozenClient, RateBudget
from iozen_etl.replay import replay_csv
from iozen_etl.settings import DataPaths

ROWS = 10_000
LIMIT = 500
WINDOW_S = 10.0
LATENCY_MS = 100
CONCURRENCY = 16


def run() -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="iozen-bench-replay-") as tmp,
        tempfile.TemporaryFile("w+") as log,
    ):
        server = subprocess.Popen(
            [
                sys.executable, "-m", "iozen_etl", "sandbox",
                "--bots", "1", "--submissions-per-bot", "0",
                "--rate-limit", str(LIMIT), "--window-s", str(WINDOW_S),
                "--latency-ms", str(LATENCY_MS),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            first, second = server.stdout.readline(), server.stdout.readline()
            if not first.startswith("IOZEN_BASE_URL=") or not second.startswith("IOZEN_API_KEY="):
                log.seek(0)
                raise RuntimeError(f"the sandbox did not start: {log.read()[-2000:]}")
            base_url = first.strip().removeprefix("IOZEN_BASE_URL=")
            api_key = second.strip().removeprefix("IOZEN_API_KEY=")
            return _measure(Path(tmp), base_url, api_key)
        finally:
            server.terminate()
            server.wait(timeout=30)


def _measure(tmp: Path, base_url: str, api_key: str) -> dict[str, Any]:
    paths = DataPaths(tmp / "data")
    csv_path = tmp / "bench.csv"
    # The budget's window must match the server's (the real API's is 60 s, the client's default).
    budget = RateBudget(window_s=WINDOW_S)
    with IozenClient(api_key, base_url, budget=budget) as client:
        bot = client.list_intake_bots_page().items[0]
        _write_rows(csv_path, ROWS)
        posts_before = _server_posts(base_url)
        first = replay_csv(client, paths, csv_path, bot_id=bot.id, concurrency=CONCURRENCY)
        stats = client.stats.snapshot()
        posts_first = _server_posts(base_url) - posts_before
        second = replay_csv(client, paths, csv_path, bot_id=bot.id, concurrency=CONCURRENCY)
        posts_rerun = _server_posts(base_url) - posts_before - posts_first

    # Every request the replay made: one GET for the bot's schema, then the POSTs.
    requests = first.posts_sent + 1
    allowance = LIMIT * first.seconds / WINDOW_S
    steady = (requests - LIMIT) / (LIMIT * (first.seconds - WINDOW_S) / WINDOW_S)
    result = {
        "rows": ROWS,
        "limit": LIMIT,
        "window_s": WINDOW_S,
        "latency_ms": LATENCY_MS,
        "concurrency": CONCURRENCY,
        "created": first.created,
        "seconds": round(first.seconds, 2),
        "rows_per_s": round(first.created / first.seconds, 1),
        "budget_share": round(requests / allowance, 3),
        "budget_share_steady": round(steady, 3),
        "throttled_429": stats.get("throttled", 0),
        "posts_received": posts_first,  # the sandbox's count, 429-refused attempts included
        "rerun_posts": posts_rerun,
        "rerun_already_created": second.already_created,
        "rerun_seconds": round(second.seconds, 2),
    }
    print(
        f"replay of {ROWS:,} rows, limit {LIMIT} per {WINDOW_S:g} s, {LATENCY_MS} ms latency, "
        f"{CONCURRENCY} in flight: {first.created:,} created in {first.seconds:.1f} s "
        f"({result['rows_per_s']} rows/s)"
    )
    print(
        f"  rate budget used: {result['budget_share']:.1%} overall, "
        f"{result['budget_share_steady']:.1%} after the first window (target >= 90%); "
        f"429s met: {result['throttled_429']}"
    )
    print(
        f"  re-run: {posts_rerun} POSTs (target 0), {second.already_created:,} rows already "
        f"created, {second.seconds:.1f} s"
    )
    return result


def _write_rows(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["full_name", "email", "team_size", "priority", "products", "consent"])
        for i in range(rows):
            writer.writerow([f"Person {i}", f"p{i}@example.com", i, "high", "crm|api", "yes"])


def _server_posts(base_url: str) -> int:
    """POSTs the sandbox received, from its own request log (not the client's word)."""
    root = base_url.removesuffix("/api/v1")
    url = f"{root}/_sandbox/requests?route=create_submission&method=POST"
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.load(answer)
    data = body.get("data", body)  # with or without the API's envelope
    return int(data["count"])


if __name__ == "__main__":
    run()
