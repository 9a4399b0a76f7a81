"""The API client's figures, against the sandbox served on loopback by a separate process.

The sandbox runs as ``python -m iozen_etl.sandbox --port 0 ...`` (its own interpreter, as a
real server would be, so it does not compete with the client for this process's GIL).

1. Listing speed: the client walking every page of one bot (typed records, order checks,
   budget bookkeeping) against a bare httpx loop over the same pages (GET, ``json()``, follow
   ``next_cursor``): the floor. Each round runs both back to back (alternating which goes
   first) over one open client each; the ratio is the median of the rounds' ratios. The CPU
   time this process spends per page is given too (less sensitive to a busy machine). Done
   twice: with no added latency (the client's own cost fully exposed) and with 20 ms.
2. Rate-budget share: several streams (threads) share one client and list submissions as fast
   as the budget allows, against a sandbox with a real-time sliding window and 150 ms latency.
   The real limit is 500 per 60 s; to keep the bench short the window is 12 s with a limit of
   100, the same 500/min rate. Streams start requests for exactly two windows; the share is
   ``requests completed / (limit x elapsed / window)`` with elapsed = the two windows, and is
   also given for the second window alone (steady state, the first one started empty).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import httpx

from bench.support import sandbox_process
from iozen_etl.api import IozenClient, IozenError, RateBudget

SPEED_SUBMISSIONS = 20_000
SPEED_RUNS = ((0.0, 15), (20.0, 3))  # (sandbox latency in ms, rounds)
SHARE_LIMIT = 100
SHARE_WINDOW_S = 12.0
SHARE_WINDOWS = 2
SHARE_LATENCY_MS = 150.0
SHARE_STREAMS = 4


def first_bot_ids(base_url: str, api_key: str) -> list[str]:
    with IozenClient(api_key, base_url, budget=RateBudget()) as client:
        return [bot.id for bot in client.list_intake_bots_page().items]


def bare_listing(http: httpx.Client, bot_id: str) -> int:
    """The floor: the least any client must do to read every page."""
    count = 0
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 100}
        if cursor is not None:
            params["cursor"] = cursor
        data = http.get(f"/intake-bots/{bot_id}/submissions", params=params).json()["data"]
        count += len(data["submissions"])
        cursor = data["pagination"]["next_cursor"]
        if not data["pagination"]["has_more"] or cursor is None:
            return count


def client_listing(client: IozenClient, bot_id: str) -> int:
    return sum(len(page.items) for page in client.iter_submission_pages(bot_id))


def listing_speed(latency_ms: float, rounds: int) -> dict[str, float | int]:
    """Median wall time of each listing, and this process's CPU time per page.

    Each side keeps one open client (and so one warm connection) for all its rounds: what is
    timed is reading the pages, not building a client (an SSL context alone is ~50 ms).
    """
    walls: dict[str, list[float]] = {"bare": [], "client": []}
    cpus: dict[str, list[float]] = {"bare": [], "client": []}
    options: tuple[str, ...] = ("--bots", "1", "--submissions-per-bot", str(SPEED_SUBMISSIONS))
    options += ("--rate-limit", str(10**9), "--latency-ms", str(latency_ms))
    with sandbox_process(*options) as (base_url, api_key):
        (bot_id,) = first_bot_ids(base_url, api_key)
        headers = {"Authorization": f"Bearer {api_key}"}
        with (
            httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as http,
            IozenClient(api_key, base_url, budget=RateBudget()) as client,
        ):
            listings: dict[str, Callable[[], int]] = {
                "bare": lambda: bare_listing(http, bot_id),
                "client": lambda: client_listing(client, bot_id),
            }
            expected = listings["bare"]()
            listings["client"]()  # warm up the connection, imports and caches
            for round_ in range(rounds):
                order = ["bare", "client"] if round_ % 2 == 0 else ["client", "bare"]
                for name in order:
                    wall, cpu = time.perf_counter(), time.process_time()
                    count = listings[name]()
                    cpus[name].append(time.process_time() - cpu)
                    walls[name].append(time.perf_counter() - wall)
                    assert count == expected, (count, expected)
    pages = -(-expected // 100)
    bare_s, ours_s = statistics.median(walls["bare"]), statistics.median(walls["client"])
    # Each round's two listings ran back to back: the median of their ratios cancels the drift
    # of a shared machine better than a ratio of medians.
    paired = statistics.median(c / b for b, c in zip(walls["bare"], walls["client"], strict=True))
    tag = f"latency{latency_ms:g}ms"
    return {
        f"{tag}_pages": pages,
        f"{tag}_bare_httpx_s": round(bare_s, 4),
        f"{tag}_client_s": round(ours_s, 4),
        f"{tag}_client_vs_bare": round(paired, 3),
        f"{tag}_bare_cpu_ms_per_page": round(statistics.median(cpus["bare"]) / pages * 1000, 3),
        f"{tag}_client_cpu_ms_per_page": round(statistics.median(cpus["client"]) / pages * 1000, 3),
    }


def _read_until(
    client: IozenClient, bot_ids: list[str], started: float, deadline: float
) -> tuple[list[float], list[str]]:
    """One thread per bot reading its pages over and over until ``deadline``: when each request
    completed (seconds after ``started``), and the errors met."""
    completed: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def stream(bot_id: str) -> None:
        while time.monotonic() < deadline:
            cursor: str | None = None
            while time.monotonic() < deadline:
                try:
                    page = client.list_submissions_page(bot_id, cursor)
                except IozenError as error:
                    with lock:
                        failures.append(type(error).__name__)
                    return
                finished = time.monotonic()
                if finished >= deadline:
                    return  # sent late after waiting for the budget: not counted
                with lock:
                    completed.append(finished - started)
                cursor = page.next_cursor
                if cursor is None:
                    break

    threads = [threading.Thread(target=stream, args=(bot_id,)) for bot_id in bot_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return completed, failures


def budget_share() -> dict[str, float | int]:
    options = (
        "--bots", str(SHARE_STREAMS),
        "--submissions-per-bot", "3000",
        "--rate-limit", str(SHARE_LIMIT),
        "--window-s", str(SHARE_WINDOW_S),
        "--latency-ms", str(SHARE_LATENCY_MS),
    )  # fmt: skip
    with sandbox_process(*options) as (base_url, api_key):
        bot_ids = first_bot_ids(base_url, api_key)
        time.sleep(SHARE_WINDOW_S + 0.5)  # let that request leave the window: start empty
        budget = RateBudget(window_s=SHARE_WINDOW_S)
        with IozenClient(api_key, base_url, budget=budget) as client:
            started = time.monotonic()
            deadline = started + SHARE_WINDOWS * SHARE_WINDOW_S
            completed, failures = _read_until(client, bot_ids, started, deadline)
            stats = client.stats.snapshot()
    # Only requests completed within the two windows count (one still in flight at the deadline
    # is left out, a slight bias against the client); elapsed is exactly the two windows.
    elapsed = SHARE_WINDOWS * SHARE_WINDOW_S
    second_window = sum(1 for t in completed if SHARE_WINDOW_S <= t < 2 * SHARE_WINDOW_S)
    return {
        "share_limit": SHARE_LIMIT,
        "share_window_s": SHARE_WINDOW_S,
        "share_latency_ms": SHARE_LATENCY_MS,
        "share_streams": SHARE_STREAMS,
        "share_requests_completed": len(completed),
        "share_of_budget": round(len(completed) / (SHARE_LIMIT * elapsed / SHARE_WINDOW_S), 3),
        "share_second_window": round(second_window / SHARE_LIMIT, 3),
        "share_failed_requests": len(failures),
        "share_429s": int(stats["throttled"]),
        "share_requests_sent": int(stats["requests"]),
    }


def run() -> dict[str, float | int]:
    figures: dict[str, float | int] = {}
    for latency_ms, rounds in SPEED_RUNS:
        speed = listing_speed(latency_ms, rounds)
        figures.update(speed)
        tag = f"latency{latency_ms:g}ms"
        print(
            f"listing {speed[f'{tag}_pages']} pages, sandbox latency {latency_ms:g} ms: "
            f"bare httpx {speed[f'{tag}_bare_httpx_s']:.3f} s, "
            f"client {speed[f'{tag}_client_s']:.3f} s "
            f"(x{speed[f'{tag}_client_vs_bare']:.3f}; target <= x1.10); CPU per page "
            f"{speed[f'{tag}_bare_cpu_ms_per_page']:.2f} ms bare, "
            f"{speed[f'{tag}_client_cpu_ms_per_page']:.2f} ms client",
            flush=True,
        )
    share = budget_share()
    figures.update(share)
    print(
        f"rate budget {SHARE_LIMIT}/{SHARE_WINDOW_S:g}s (500/min), {SHARE_LATENCY_MS:g} ms "
        f"latency, {SHARE_STREAMS} streams, {SHARE_WINDOWS} windows: "
        f"{share['share_requests_completed']} requests, share {share['share_of_budget']:.1%} "
        f"(second window {share['share_second_window']:.1%}; target >= 90%), "
        f"{share['share_failed_requests']} failed, {share['share_429s']} 429s"
    )
    return figures


if __name__ == "__main__":
    run()
