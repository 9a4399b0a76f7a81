"""Pagination: one generator, its stop rule, resume points, order check (docs/decisions.md #5-6)."""

from __future__ import annotations

import httpx
import pytest

from iozen_etl.api import MalformedResponse, ValidationFailed, is_ascending
from iozen_etl.api.parsing import parse_submission
from tests.support.wire import bot, fail, mock_client, ok, page, submission

BOTS = [bot(n) for n in range(1, 251)]


def keyset_bots(request: httpx.Request) -> httpx.Response:
    """The sandbox's default paging: cursor = id of the last item, items strictly after it."""
    limit = int(request.url.params["limit"])
    cursor = request.url.params.get("cursor")
    start = 0 if cursor is None else [b["id"] for b in BOTS].index(cursor) + 1
    chunk = BOTS[start : start + limit]
    more = start + limit < len(BOTS)
    return ok(page("intake_bots", chunk, chunk[-1]["id"] if more else None))


def test_walks_every_page_and_stops_on_a_null_cursor() -> None:
    with mock_client(keyset_bots) as client:
        pages = list(client.iter_intake_bot_pages())
    assert [len(p.items) for p in pages] == [100, 100, 50]
    assert [p.resume_point for p in pages] == ["bot100", "bot200", "bot250"]
    assert all(p.in_order for p in pages)
    assert client.stats.requests == 3


def test_resumes_from_a_stored_point() -> None:
    with mock_client(keyset_bots) as client:
        pages = list(client.iter_intake_bot_pages("bot200"))
    assert [b.id for b in pages[0].items][:1] == ["bot201"] and len(pages) == 1


def test_resuming_at_the_end_yields_one_empty_page_keeping_the_resume_point() -> None:
    with mock_client(keyset_bots) as client:
        (only,) = list(client.iter_intake_bot_pages("bot250"))
    assert only.items == [] and only.resume_point == "bot250" and only.in_order


def has_more_false_but_cursor(request: httpx.Request) -> httpx.Response:
    return ok(
        {"intake_bots": [bot(1)], "pagination": {"has_more": False, "next_cursor": "opaque-9"}}
    )


def test_stops_on_has_more_false_and_resumes_from_the_cursor_given() -> None:
    with mock_client(has_more_false_but_cursor) as client:
        (only,) = list(client.iter_intake_bot_pages())
    assert only.resume_point == "opaque-9" and client.stats.requests == 1


OPAQUE = {None: ("tok-A", BOTS[:2]), "tok-A": ("tok-B", BOTS[2:4]), "tok-B": (None, BOTS[4:5])}


def opaque_cursors(request: httpx.Request) -> httpx.Response:
    next_cursor, items = OPAQUE[request.url.params.get("cursor")]
    return ok(page("intake_bots", items, next_cursor))


def test_cursors_are_opaque() -> None:
    with mock_client(opaque_cursors) as client:
        pages = list(client.iter_intake_bot_pages())
    assert [p.resume_point for p in pages] == ["tok-A", "tok-B", "bot005"]


def newest_first(request: httpx.Request) -> httpx.Response:
    cursor = request.url.params.get("cursor")
    items = [bot(4), bot(3)] if cursor is None else [bot(2), bot(1)]
    return ok(page("intake_bots", items, None if cursor else "bot003"))


def test_a_descending_page_is_flagged() -> None:
    with mock_client(newest_first) as client:
        pages = list(client.iter_intake_bot_pages())
    assert [p.in_order for p in pages] == [False, False]


def pages_out_of_order_between(request: httpx.Request) -> httpx.Response:
    cursor = request.url.params.get("cursor")
    items = [bot(3), bot(4)] if cursor is None else [bot(1), bot(2)]
    return ok(page("intake_bots", items, None if cursor else "bot004"))


def test_order_is_checked_against_the_previous_page() -> None:
    with mock_client(pages_out_of_order_between) as client:
        pages = list(client.iter_intake_bot_pages())
    assert [p.in_order for p in pages] == [True, False]


def repeating_cursor(request: httpx.Request) -> httpx.Response:
    return ok(page("intake_bots", [bot(1)], "same"))


def test_a_cursor_that_does_not_move_is_malformed_not_an_endless_loop() -> None:
    with mock_client(repeating_cursor) as client, pytest.raises(MalformedResponse, match="repeats"):
        list(client.iter_intake_bot_pages("same"))


def missing_pagination(request: httpx.Request) -> httpx.Response:
    return ok({"intake_bots": []})


def test_a_list_without_pagination_is_malformed() -> None:
    with (
        mock_client(missing_pagination) as client,
        pytest.raises(MalformedResponse, match="pagination"),
    ):
        client.list_intake_bots_page()


def test_order_compares_times_not_strings() -> None:
    # "…00Z" sorts after "…00.500Z" as text, but is half a second earlier (docs/decisions.md #24).
    early = parse_submission(
        submission(1, created_at="2026-02-01T00:00:00Z"), bot_id="b", detail=False
    )
    late = parse_submission(
        submission(2, created_at="2026-02-01T00:00:00.500Z"), bot_id="b", detail=False
    )
    same_time = parse_submission(
        submission(3, created_at="2026-02-01T00:00:00.500Z"), bot_id="b", detail=False
    )
    assert is_ascending([early, late, same_time])
    assert not is_ascending([late, early])
    assert not is_ascending([late], previous=late)  # a repeated item is not ascending
    junk = parse_submission(submission(4, created_at="yesterday"), bot_id="b", detail=False)
    assert not is_ascending([early, junk])


def second_page_fails(request: httpx.Request) -> httpx.Response:
    if request.url.params.get("cursor") is None:
        return ok(page("intake_bots", BOTS[:100], "bot100"))
    issue = {"path": ["cursor"], "message": "Unknown cursor", "code": "invalid_cursor"}
    return fail(400, "validation_failed", {"issues": [issue]})


def test_a_failing_next_page_is_raised_only_when_it_is_asked_for() -> None:
    with mock_client(second_page_fails) as client:
        pages = client.iter_intake_bot_pages()
        first = next(pages)
        assert len(first.items) == 100 and first.resume_point == "bot100"
        assert client.stats.requests == 1  # nothing is fetched before it is asked for
        with pytest.raises(ValidationFailed) as caught:
            next(pages)
    assert caught.value.is_cursor_error
