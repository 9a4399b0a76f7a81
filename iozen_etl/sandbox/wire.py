"""How the world looks on the wire under a config's variants: list order, extra keys, times.

The endpoints and the ground truth both show the world through a ``Wire``, so what the truth
says is what a client fetching every page would see.
"""

from __future__ import annotations

import json
import re
from typing import Any

from iozen_etl.sandbox.config import SandboxConfig
from iozen_etl.sandbox.protocol import Problem, dumps
from iozen_etl.sandbox.state import BotState, messages

# docs/decisions.md #24, its variant: the same instants without milliseconds (key-anchored,
# so answers that merely look like times are left alone).
_MS_STAMP = re.compile(
    rb'("(?:created_at|updated_at|last_delivery_at)":")'
    rb'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d{3}Z"'
)
# unknown_extras: keys no client knows, as an additive API change would bring them.
_EXTRA_ITEM_KEYS = {"workspace_id": "ws_sandbox", "x_unreleased": {"tier": 2, "flags": ["beta"]}}
_EXTRA_ITEM_PREFIX = b'{"workspace_id":"ws_sandbox","x_unreleased":{"tier":2,"flags":["beta"]},'
_MYSTERY_ITEM = {
    "id": "mx_1",
    "kind": "mystery",
    "name": "mystery_widget",
    "payload": {"shape": "hexagon"},
}
_DETAIL_HEAD = ("id", "intake_bot_id", "data", "status", "ai_summary", "is_test", "file_count")


def wire_times(body: bytes, precision: str) -> bytes:
    """The body as sent: without milliseconds when ``precision`` is "s"."""
    if precision == "ms":
        return body
    return _MS_STAMP.sub(rb'\1\2Z"', body)


class Wire:
    """Shows records as the configured API variant sends them (reads the config on each call)."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config

    def times(self, body: bytes) -> bytes:
        return wire_times(body, self.config.timestamp_precision)

    def in_list_order(self, items: list[Any]) -> list[Any]:
        """Ascending items in the order lists return them."""
        return items[::-1] if self.config.list_order == "desc" else items

    def with_extras(self, item: dict[str, Any]) -> dict[str, Any]:
        return {**_EXTRA_ITEM_KEYS, **item} if self.config.unknown_extras else item

    def submission_item(self, body: bytes) -> bytes:
        """A stored list item as sent (unknown keys first when ``unknown_extras``)."""
        return _EXTRA_ITEM_PREFIX + body[1:] if self.config.unknown_extras else body

    def pagination(self, next_cursor: str | None, total: int) -> dict[str, Any]:
        pagination: dict[str, Any] = {
            "has_more": next_cursor is not None,
            "next_cursor": next_cursor,
        }
        if self.config.unknown_extras:
            pagination["total_estimate"] = total
        return pagination

    def bot_detail(self, bot: BotState) -> dict[str, Any]:
        detail = bot.detail(self.config.schema_shape)
        if self.config.unknown_extras:
            schema = detail["schema"]
            if isinstance(schema, dict):
                schema["fields"].append(dict(_MYSTERY_ITEM))
                schema["layout_version"] = 3
            detail = self.with_extras(detail)
        return detail

    def submission_detail(self, bot: BotState, submission_id: str) -> dict[str, Any]:
        """The submission with its bot id and messages, or the API's 404."""
        index = bot.position(submission_id)
        if index is None:
            raise Problem(404, "resource_not_found", {"resource": "submission"})
        item = json.loads(self.submission_item(bot.sub_bodies[index]))
        detail = {key: value for key, value in item.items() if key != "message_count"}
        detail["intake_bot_id"] = bot.id
        detail["messages"] = messages(bot, item)
        head = {key: detail.pop(key) for key in _DETAIL_HEAD}
        return {**head, **detail}

    def parsed_item(self, body: bytes) -> dict[str, Any]:
        """A stored list item parsed back from the bytes a client would get."""
        item: dict[str, Any] = json.loads(self.times(self.submission_item(body)))
        return item

    def as_sent(self, value: dict[str, Any]) -> dict[str, Any]:
        """``value`` as a client would parse it (times cut to seconds under that variant)."""
        if self.config.timestamp_precision == "ms":
            return value
        sent: dict[str, Any] = json.loads(self.times(dumps(value)))
        return sent
