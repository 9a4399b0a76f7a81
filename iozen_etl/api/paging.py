"""Cursor pagination, written once: a Page from one answer, and the walk from a resume point.

The stop rule (``has_more`` false or ``next_cursor`` null), the resume point reported after each
page, and the order check of docs/decisions.md #5 and #6 live here and nowhere else. Cursors are
opaque: nothing here assumes a cursor is an item id.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from itertools import pairwise
from typing import Protocol, TypeVar

from iozen_etl.api.errors import MalformedResponse
from iozen_etl.api.models import Page, SchemaItem

PAGE_SIZE = 100


class Ordered(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> str: ...


ItemT = TypeVar("ItemT", bound=Ordered)


def order_key(item: Ordered) -> tuple[float, str] | None:
    """(created_at as epoch seconds, id); None when created_at is not an ISO-8601 time.

    Parsed rather than compared as strings, because ``...00Z`` and ``...00.500Z`` (with and
    without milliseconds, docs/decisions.md #24) do not sort correctly as text.
    """
    try:
        return datetime.fromisoformat(item.created_at).timestamp(), item.id
    except ValueError:
        return None


def is_ascending(items: Sequence[Ordered], previous: Ordered | None = None) -> bool:
    """True when items are strictly ascending by (created_at, id), starting after ``previous``."""
    chain = ([previous] if previous is not None else []) + list(items)
    if len(chain) < 2:
        return all(order_key(item) is not None for item in chain)
    stamps = [item.created_at for item in chain]
    width = len(stamps[0])
    if all(len(stamp) == width and stamp[-1:] == "Z" for stamp in stamps):
        # Same-shaped UTC stamps sort as text; this skips parsing 100 times a page. Strictly
        # rising stamps settle it; only ties need the ids.
        if all(map(operator.lt, stamps, stamps[1:])):
            return True
        pairs = list(map(_created_and_id, chain))
        return all(map(operator.lt, pairs, pairs[1:]))
    keys = []
    for item in chain:
        key = order_key(item)
        if key is None:
            return False
        keys.append(key)
    return all(a < b for a, b in pairwise(keys))


_created_and_id = operator.attrgetter("created_at", "id")


def build_page(
    items: list[ItemT],
    *,
    has_more: bool,
    next_cursor: str | None,
    cursor: str | None,
    request_id: str | None,
    schema: tuple[SchemaItem, ...] | None = None,
    previous: Ordered | None = None,
) -> Page[ItemT]:
    """A page whose resume point is the next cursor, else the last item's id, else ``cursor``.

    ``in_order`` also compares the first item with ``previous``, the last item of the page before.
    """
    if next_cursor is not None:
        resume_point: str | None = next_cursor
    elif items:
        resume_point = items[-1].id
    else:
        resume_point = cursor
    return Page(
        items=items,
        has_more=has_more,
        next_cursor=next_cursor,
        resume_point=resume_point,
        in_order=is_ascending(items, previous),
        request_id=request_id,
        schema=schema,
    )


class Fetched(Protocol):
    """A list answer read off the wire but not yet turned into records."""

    @property
    def has_more(self) -> bool: ...

    @property
    def next_cursor(self) -> str | None: ...

    @property
    def request_id(self) -> str | None: ...


FetchedT = TypeVar("FetchedT", bound=Fetched)


def iter_pages(
    fetch: Callable[[str | None], FetchedT],
    build: Callable[[FetchedT, str | None, ItemT | None], Page[ItemT]],
    resume_point: str | None,
    *,
    path: str,
) -> Iterator[Page[ItemT]]:
    """Pages from ``resume_point`` (None: the start) until the server says there are no more.

    ``fetch`` reads one answer off the wire and ``build`` turns it into a Page, given the previous
    page's last item, so that ``in_order`` covers the seam between pages too and a caller can fall
    back to a full scan of the stream (docs/decisions.md #5).
    """
    cursor = resume_point
    previous: ItemT | None = None
    while True:
        fetched = fetch(cursor)
        page = build(fetched, cursor, previous)
        yield page
        if page.items:
            previous = page.items[-1]
        next_cursor = fetched.next_cursor
        if not fetched.has_more or next_cursor is None:
            return
        if next_cursor == cursor:
            # The server handed back the cursor it was given: following it would loop forever.
            raise MalformedResponse(
                f"next_cursor repeats the cursor of the request ({cursor!r})",
                method="GET",
                path=path,
                request_id=fetched.request_id,
            )
        cursor = next_cursor
