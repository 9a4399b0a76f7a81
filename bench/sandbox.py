"""Sandbox speed and size: seeding 1,000 bots x 1,000 submissions, and pages per second served.

``run()`` returns the figures; ``python -m bench.sandbox`` prints them. Pages hold 100
submissions. "raw" pages are fetched without parsing the JSON; "parsed" adds
``response.json()`` (what a client paging it does at best). Over loopback the server runs in
its own process (``iozen-etl sandbox``), as the demo runs it; ``http.client`` shows
what the server can serve when the client costs little (httpx itself tops out lower).
"""

from __future__ import annotations

import gc
import http.client
import json
import resource
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

from iozen_etl.sandbox import Sandbox, SandboxConfig, sandbox_transport, serve

BOTS = 1_000
SUBMISSIONS_PER_BOT = 1_000
PAGES = 2_000


def _rss_mb() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _page_through(client: httpx.Client, bot_ids: list[str], pages: int, parse: bool) -> float:
    """Pages per second over the given bots, 100 submissions a page, until ``pages`` pages."""
    done = 0
    started = time.perf_counter()
    for bot_id in bot_ids:
        cursor: str | None = None
        while done < pages:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            response = client.get(f"/intake-bots/{bot_id}/submissions", params=params)
            response.raise_for_status()
            done += 1
            if parse:
                cursor = response.json()["data"]["pagination"]["next_cursor"]
            else:
                # Read the cursor off the tail of the body without parsing the page.
                tail = response.content[-120:].decode()
                marker = '"next_cursor":'
                value = tail[tail.rindex(marker) + len(marker) :].rstrip("}")
                cursor = None if value == "null" else value.strip('"')
            if not cursor:
                break
        if done >= pages:
            break
    return done / (time.perf_counter() - started)


def run() -> dict[str, Any]:
    gc.collect()
    rss_before = _rss_mb()
    started = time.perf_counter()
    config = SandboxConfig(
        bots=BOTS, submissions_per_bot=SUBMISSIONS_PER_BOT, rate_limit=1_000_000_000
    )
    sandbox = Sandbox(config)
    seed_s = time.perf_counter() - started
    rss_after = _rss_mb()
    biggest = sorted(sandbox.truth_bots(), key=lambda b: -b["submission_count"])
    bot_ids = [bot["id"] for bot in biggest]
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    figures: dict[str, Any] = {
        "submissions": sandbox.submission_total(),
        "bots": BOTS,
        "seed_seconds": round(seed_s, 2),
        "rss_mb_holding_1m": round(rss_after, 1),
        "rss_mb_growth_for_1m": round(rss_after - rss_before, 1),
    }
    transport = sandbox_transport(sandbox)
    with httpx.Client(transport=transport, base_url="http://sandbox/api/v1", headers=headers) as c:
        figures["inprocess_pages_per_s_raw"] = round(_page_through(c, bot_ids, PAGES, False))
        figures["inprocess_pages_per_s_parsed"] = round(_page_through(c, bot_ids, PAGES, True))
    with (
        serve(sandbox) as server,
        httpx.Client(base_url=server.base_url, headers=headers) as client,
    ):
        # Client and server share one GIL here; the separate-process figures below do not.
        figures["loopback_same_process_pages_per_s_parsed"] = round(
            _page_through(client, bot_ids, PAGES // 4, True)
        )
    del sandbox
    gc.collect()
    figures.update(_loopback_figures())
    return figures


def _loopback_figures() -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "iozen_etl",
        "sandbox",
        "--bots",
        "5",
        "--submissions-per-bot",
        "20000",
        "--rate-limit",
        "1000000000",
    ]
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip().split("=", 1)[1]
        key = process.stdout.readline().strip().split("=", 1)[1]
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base_url, headers=headers) as client:
            bots = client.get("/intake-bots").json()["data"]["intake_bots"]
            bot_ids = [b["id"] for b in sorted(bots, key=lambda b: -b["submission_count"])]
            raw = _page_through(client, bot_ids, PAGES, False)
            parsed = _page_through(client, bot_ids, PAGES, True)
        return {
            "loopback_pages_per_s_raw": round(raw),
            "loopback_pages_per_s_parsed": round(parsed),
            "loopback_pages_per_s_http_client": round(_http_client_rate(base_url, key, bot_ids[0])),
        }
    finally:
        process.terminate()
        process.wait(timeout=30)


def _http_client_rate(base_url: str, key: str, bot_id: str) -> float:
    parts = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    headers = {"Authorization": f"Bearer {key}"}
    cursor = ""
    started = time.perf_counter()
    for _ in range(PAGES // 2):
        query = "limit=100" + (f"&cursor={cursor}" if cursor else "")
        connection.request(
            "GET", f"{parts.path}/intake-bots/{bot_id}/submissions?{query}", headers=headers
        )
        body = connection.getresponse().read()
        cursor = json.loads(body[body.rindex(b'"pagination"') + 13 : -2])["next_cursor"] or ""
    connection.close()
    return (PAGES // 2) / (time.perf_counter() - started)


def main() -> None:
    for name, value in run().items():
        print(f"sandbox.{name} = {value}")


if __name__ == "__main__":
    main()
