"""The sandbox's records: keys, bots with their stored submissions, and webhooks.

Each bot keeps its submissions as two parallel lists sorted by (created_at, id): the ids and the
submission's list-item JSON, serialised once. Ids are minted so that id order is creation order
within a bot (see ``timefmt.cuid``), so a cursor is found by bisecting the id list and a page
body is a join of stored bytes.
"""

from __future__ import annotations

import bisect
import random
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from iozen_etl.sandbox.protocol import dumps
from iozen_etl.sandbox.timefmt import cuid, iso_ms, parse_iso_ms


@dataclass
class KeyState:
    plan: str
    scopes: tuple[str, ...]
    window: deque[float] = field(default_factory=deque)  # times of counted requests


class BotState:
    """One intake bot and its submissions, in order."""

    def __init__(
        self,
        bot_id: str,
        name: str,
        description: str,
        created_ms: int,
        items: list[dict[str, Any]],
        fingerprint: str,
        schema_version: int,
        share_url: str,
    ) -> None:
        self.id = bot_id
        self.name = name
        self.description = description
        self.status = "ACTIVE"
        self.created_ms = created_ms
        self.updated_ms = created_ms
        self.items = items
        self.fingerprint = fingerprint
        self.schema_version = schema_version
        self.share_url = share_url
        self.sub_ids: list[str] = []
        self.sub_bodies: list[bytes] = []
        self.last_ms = 0
        self.last_seq = 0
        self._list_schema: bytes | None = None

    def mint_id(self, ms: int, rng: random.Random) -> tuple[str, int]:
        """A submission id greater than every id this bot has, and its (possibly nudged) time."""
        ms = max(ms, self.last_ms)
        seq = self.last_seq + 1 if ms == self.last_ms else 0
        self.last_ms, self.last_seq = ms, seq
        return cuid(ms, seq, self.fingerprint, rng.getrandbits(41)), ms

    def fields(self) -> list[dict[str, Any]]:
        return [item for item in self.items if item.get("kind", "field") == "field"]

    def list_schema(self) -> bytes:
        """The submissions list's sibling ``schema``: fields only, ``{name, label, type}``."""
        if self._list_schema is None:
            self._list_schema = dumps(
                [{"name": f["name"], "label": f["label"], "type": f["type"]} for f in self.fields()]
            )
        return self._list_schema

    def schema_changed(self) -> None:
        self._list_schema = None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "submission_count": len(self.sub_ids),
            "created_at": iso_ms(self.created_ms),
            "updated_at": iso_ms(self.updated_ms),
        }

    def detail(self, shape: str) -> dict[str, Any]:
        schema: Any
        if shape == "legacy":
            schema = [_legacy_item(item) for item in self.fields()]
        else:
            schema = {"fields": [dict(item) for item in self.items]}
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "description": self.description,
            "share_url": self.share_url,
            "submission_count": len(self.sub_ids),
            "schema": schema,
            "created_at": iso_ms(self.created_ms),
            "updated_at": iso_ms(self.updated_ms),
        }

    def position(self, submission_id: str) -> int | None:
        index = bisect.bisect_left(self.sub_ids, submission_id)
        if index < len(self.sub_ids) and self.sub_ids[index] == submission_id:
            return index
        return None

    def append(self, submission_id: str, body: bytes) -> None:
        if self.sub_ids and submission_id < self.sub_ids[-1]:
            index = bisect.bisect_left(self.sub_ids, submission_id)
            self.sub_ids.insert(index, submission_id)
            self.sub_bodies.insert(index, body)
        else:
            self.sub_ids.append(submission_id)
            self.sub_bodies.append(body)


def _legacy_item(item: dict[str, Any]) -> dict[str, Any]:
    # The older shape (OP-GB) predates content blocks and calls short text "text".
    legacy: dict[str, Any] = {
        "name": item["name"],
        "label": item["label"],
        "type": "text" if item["type"] == "short_text" else item["type"],
        "required": item["required"],
    }
    if "options" in item:
        legacy["options"] = item["options"]
    return legacy


@dataclass
class WebhookState:
    id: str
    url: str
    events: list[str]
    description: str | None
    secret: str
    created_ms: int
    updated_ms: int
    status: str = "active"
    last_delivery_ms: int | None = None
    last_delivery_ok: bool | None = None
    consecutive_fails: int = 0

    def wire(self, with_secret: bool = False) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "status": self.status,
            "description": self.description,
            "last_delivery_at": None
            if self.last_delivery_ms is None
            else iso_ms(self.last_delivery_ms),
            "last_delivery_ok": self.last_delivery_ok,
            "consecutive_fails": self.consecutive_fails,
            "created_at": iso_ms(self.created_ms),
            "updated_at": iso_ms(self.updated_ms),
        }
        if with_secret:
            wire["secret"] = self.secret
        return wire


def submission_body(
    submission_id: str,
    data: dict[str, Any],
    status: str,
    ai_summary: str | None,
    is_test: bool,
    file_count: int,
    message_count: int,
    schema_version: int,
    created_ms: int,
    updated_ms: int,
) -> bytes:
    return dumps(
        {
            "id": submission_id,
            "data": data,
            "status": status,
            "ai_summary": ai_summary,
            "is_test": is_test,
            "file_count": file_count,
            "message_count": message_count,
            "schema_version": schema_version,
            "created_at": iso_ms(created_ms),
            "updated_at": iso_ms(updated_ms),
        }
    )


def count_files(bot: BotState, data: dict[str, Any]) -> int:
    file_fields = {f["name"] for f in bot.fields() if f["type"] == "file"}
    return sum(
        len(value) if isinstance(value, list) else 1
        for name, value in data.items()
        if name in file_fields and value not in (None, "", [])
    )


def count_messages(data: dict[str, Any]) -> int:
    """A welcome, then a question and an answer per answered field (see ``messages``)."""
    return 1 + 2 * sum(1 for value in data.values() if value is not None)


def messages(bot: BotState, submission: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation behind a submission, rebuilt from its answers (deterministic)."""
    if submission["message_count"] == 0:
        return []
    labels = {f["name"]: f["label"] for f in bot.fields()}
    start = parse_iso_ms(submission["created_at"])
    salt = zlib.crc32(submission["id"].encode())
    turns: list[tuple[str, str]] = [("assistant", f"Welcome to {bot.name}! Let's get started.")]
    for name, value in submission["data"].items():
        if value is None:
            continue
        answer = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        if isinstance(value, bool):
            answer = "Yes" if value else "No"
        turns.append(("assistant", f"{labels.get(name, name)}?"))
        turns.append(("user", answer))
    return [
        {
            "id": cuid(start + 15_000 * i, i, bot.fingerprint, (salt * 7919 + i) % (1 << 41)),
            "role": role,
            "content": content,
            "created_at": iso_ms(start + 15_000 * i),
        }
        for i, (role, content) in enumerate(turns)
    ]
