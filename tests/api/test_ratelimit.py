"""The rate budget's pacing decisions, on a fake clock, and its sharing per API key."""

from __future__ import annotations

import threading

import httpx
import pytest

from iozen_etl.api import RateBudget, shared_budget
from iozen_etl.api.ratelimit import budget_id
from tests.support.clock import FakeTime
from tests.support.wire import API_KEY

WINDOW = 60.0
MARGIN = 0.25


def budget_on(time: FakeTime, **kwargs) -> RateBudget:
    return RateBudget(
        window_s=WINDOW,
        margin_s=MARGIN,
        clock=time.clock,
        wall_clock=time.wall,
        sleep=time.sleep,
        **kwargs,
    )


def headers(limit: int, remaining: int, reset_in: float, time: FakeTime) -> httpx.Headers:
    reset_ms = int((time.wall() + reset_in) * 1000)
    return httpx.Headers(
        {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset_ms),
        }
    )


def test_nothing_waits_before_the_limit_is_known() -> None:
    time = FakeTime()
    budget = budget_on(time)
    for _ in range(1000):
        budget.acquire()
    assert time.sleeps == [] and budget.limit is None


def test_a_full_log_waits_for_its_oldest_answer_to_leave_the_window() -> None:
    time = FakeTime()
    budget = budget_on(time, limit=3)
    first, _ = budget.acquire()
    time.now += 0.4  # the answer arrives 0.4 s after sending: it is logged then
    budget.observe(first, headers(3, 2, WINDOW, time), counted=True)
    answered_at = time.now
    time.now += 10
    budget.acquire()
    budget.acquire()  # two still in flight
    assert budget.delay() == pytest.approx(answered_at + WINDOW + MARGIN - time.now)
    _, waited = budget.acquire()
    assert waited == pytest.approx(50.25)
    assert budget.in_window() == 3


def test_requests_in_flight_take_slots() -> None:
    time = FakeTime()
    budget = budget_on(time, limit=2)
    budget.acquire()
    budget.acquire()
    assert budget.delay() == pytest.approx(0.05)  # all of the budget in flight: poll for answers


def test_an_unanswered_request_is_logged_as_counted_when_released() -> None:
    time = FakeTime()
    budget = budget_on(time, limit=1)
    ticket, _ = budget.acquire()
    time.now += 30  # a timeout
    budget.release(ticket)
    assert budget.delay() == pytest.approx(WINDOW + MARGIN)


def test_the_limit_is_learnt_from_the_headers() -> None:
    time = FakeTime()
    budget = budget_on(time)
    ticket, _ = budget.acquire()
    budget.observe(ticket, headers(2, 1, WINDOW, time))
    budget.acquire()
    assert budget.limit == 2 and budget.delay() == pytest.approx(WINDOW + MARGIN)


def test_server_remaining_zero_holds_requests_until_its_reset() -> None:
    # Another process spends the same key: our log is nearly empty, the server's is full.
    time = FakeTime()
    budget = budget_on(time)
    ticket, _ = budget.acquire()
    budget.observe(ticket, headers(500, 0, 7.5, time))
    assert budget.delay() == pytest.approx(7.5)
    time.now += 7.5
    assert budget.delay() == 0.0


def test_requests_in_flight_are_subtracted_from_the_servers_remaining() -> None:
    time = FakeTime()
    budget = budget_on(time)
    first, _ = budget.acquire()
    time.now += 0.01
    budget.acquire()  # sent after `first`, not yet answered
    time.now += 0.01
    budget.acquire()
    budget.observe(first, headers(500, 2, 3.0, time))  # 2 left when `first` was counted
    assert budget.delay() == pytest.approx(3.0)


def test_an_older_answer_does_not_overwrite_a_newer_one() -> None:
    time = FakeTime()
    budget = budget_on(time)
    older, _ = budget.acquire()
    time.now += 0.01
    newer, _ = budget.acquire()
    budget.observe(newer, headers(500, 0, 2.0, time))
    budget.observe(older, headers(500, 40, 2.0, time))
    assert budget.delay() == pytest.approx(2.0)


def test_a_reset_far_away_is_capped_at_one_window() -> None:
    time = FakeTime()
    budget = budget_on(time)
    ticket, _ = budget.acquire()
    budget.observe(ticket, headers(500, 0, 3600.0, time))  # server clock an hour ahead
    assert budget.delay() == pytest.approx(WINDOW + MARGIN)


def test_a_refused_request_is_not_logged_and_blocks_everyone() -> None:
    time = FakeTime()
    budget = budget_on(time, limit=1)
    ticket, _ = budget.acquire()
    budget.observe(ticket, httpx.Headers(), counted=False)
    budget.refused(12.0)
    assert budget.in_window() == 0 and budget.delay() == pytest.approx(12.0)


class WouldWait(Exception):
    pass


def refuse_to_sleep(seconds: float) -> None:
    raise WouldWait


def test_concurrent_threads_never_take_more_than_the_limit() -> None:
    time = FakeTime()
    budget = RateBudget(limit=50, clock=time.clock, sleep=refuse_to_sleep)
    taken: list[float] = []
    lock = threading.Lock()

    def stream() -> None:
        for _ in range(20):
            try:
                sent, _ = budget.acquire()
            except WouldWait:
                return
            with lock:
                taken.append(sent)

    threads = [threading.Thread(target=stream) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 50


def test_one_budget_per_key_and_base_url_without_the_key_in_sight() -> None:
    one = shared_budget(API_KEY, "https://a.test/api/v1")
    assert shared_budget(API_KEY, "https://a.test/api/v1") is one
    assert shared_budget(API_KEY, "https://b.test/api/v1") is not one
    assert shared_budget(API_KEY + "x", "https://a.test/api/v1") is not one
    assert API_KEY not in repr(one) and API_KEY not in budget_id(API_KEY, "u")
