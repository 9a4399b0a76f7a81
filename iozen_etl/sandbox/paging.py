"""Cursor pagination over a sorted id list: id cursors, or opaque tokens that may expire."""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Mapping

from iozen_etl.sandbox.config import SandboxConfig
from iozen_etl.sandbox.protocol import invalid, parse_limit


class Pager:
    """Finds the requested page of a list; ``now_ms`` stamps and ages opaque cursors."""

    def __init__(self, config: SandboxConfig, now_ms: Callable[[], int]) -> None:
        self.config = config
        self._now_ms = now_ms

    def page(self, ids: list[str], query: Mapping[str, str]) -> tuple[range, str | None]:
        """(positions in ``ids``, in list order; next_cursor) of the requested page.

        ``ids`` is sorted ascending; with ``list_order="desc"`` pages walk it from the newest end
        and a cursor means "older than this item", so items created since are never reached.
        """
        limit = parse_limit(query)
        cursor = query.get("cursor", "")
        position: int | None = None
        if cursor:
            item_id = self._decode(cursor)
            position = bisect.bisect_left(ids, item_id)
            if position >= len(ids) or ids[position] != item_id:
                raise invalid(["cursor"], "Unknown cursor", "invalid_cursor")
        if self.config.list_order == "desc":
            high = len(ids) if position is None else position
            low = max(0, high - limit)
            next_cursor = self._encode(ids[low]) if low > 0 else None
            return range(high - 1, low - 1, -1), next_cursor
        start = 0 if position is None else position + 1
        end = min(start + limit, len(ids))
        next_cursor = self._encode(ids[end - 1]) if end < len(ids) else None
        return range(start, end), next_cursor

    def _encode(self, item_id: str) -> str:
        if self.config.cursor_mode == "id":
            return item_id
        token = b"after:" + item_id.encode()
        if self.config.cursor_ttl_s is not None:
            token += b"@" + str(self._now_ms()).encode()
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def _decode(self, cursor: str) -> str:
        if self.config.cursor_mode == "id":
            return cursor
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise invalid(["cursor"], "Malformed cursor", "invalid_cursor") from None
        if not raw.startswith(b"after:"):
            raise invalid(["cursor"], "Malformed cursor", "invalid_cursor")
        item_id, at, issued = raw[6:].decode("utf-8", "replace").partition("@")
        ttl = self.config.cursor_ttl_s
        if ttl is not None:
            if not at or not issued.isdigit():
                raise invalid(["cursor"], "Malformed cursor", "invalid_cursor")
            if self._now_ms() - int(issued) > ttl * 1000:
                raise invalid(["cursor"], "Cursor expired", "expired_cursor")
        return item_id
