"""The sandbox's world: its bots, webhooks and keys, and the moves that change them.

Nothing here locks: the caller (``WorldControl``, ``Sandbox``) serialises access.
"""

from __future__ import annotations

import bisect
import json
import random
import secrets
from collections.abc import Mapping
from typing import Any

from iozen_etl.sandbox.clock import SandboxClock
from iozen_etl.sandbox.config import SandboxConfig
from iozen_etl.sandbox.protocol import Problem, dumps
from iozen_etl.sandbox.seed import TEMPLATES, FieldTemplate, schema_item, value_pool
from iozen_etl.sandbox.seeding import seed_bots
from iozen_etl.sandbox.state import (
    BotState,
    KeyState,
    WebhookState,
    count_files,
    count_messages,
    submission_body,
)
from iozen_etl.sandbox.timefmt import base36, cuid, iso_ms, parse_iso_ms

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class World:
    """All state of one sandbox workspace."""

    def __init__(self, config: SandboxConfig, clock: SandboxClock) -> None:
        self.config = config
        self.clock = clock
        self.rng = random.Random(f"world-{config.seed}")
        self.bots: dict[str, BotState] = {}
        self.bot_ids: list[str] = []
        self.webhooks: dict[str, WebhookState] = {}
        self.webhook_ids: list[str] = []
        self.keys: dict[str, KeyState] = {}
        self.api_created = 0  # submissions created through POST, for the plan quota
        self._last_global_ms = 0
        self._global_seq = 0

    def seed(self) -> None:
        for bot in seed_bots(self.config):
            self._register_bot(bot)

    # ids, keys and lookups ----------------------------------------------------------------

    def mint_global_id(self, ms: int, fingerprint: str) -> str:
        ms = max(ms, self._last_global_ms)
        self._global_seq = self._global_seq + 1 if ms == self._last_global_ms else 0
        self._last_global_ms = ms
        return cuid(ms, self._global_seq, fingerprint, self.rng.getrandbits(41))

    def new_key(self, scopes: tuple[str, ...], plan: str, key: str | None = None) -> str:
        if key is None:
            key = "iozen_live_" + "".join(self.rng.choice(_ALNUM) for _ in range(32))
        self.keys[key] = KeyState(plan, scopes)
        return key

    def now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def bot(self, bot_id: str) -> BotState:
        """The bot, or the API's 404."""
        bot = self.bots.get(bot_id)
        if bot is None:
            raise Problem(404, "resource_not_found", {"resource": "intake_bot"})
        return bot

    def webhook(self, webhook_id: str) -> WebhookState:
        """The webhook, or the API's 404."""
        hook = self.webhooks.get(webhook_id)
        if hook is None:
            raise Problem(404, "resource_not_found", {"resource": "webhook"})
        return hook

    # bots ---------------------------------------------------------------------------------

    def _register_bot(self, bot: BotState) -> None:
        self.bots[bot.id] = bot
        bisect.insort(self.bot_ids, bot.id)

    def add_bot(self, name: str, items: list[dict[str, Any]] | None, description: str) -> BotState:
        now = self.now_ms()
        index = len(self.bots)
        bot_id = self.mint_global_id(now, "b0t1")
        share_url = f"bot-{base36(self.rng.getrandbits(20), 4)}"
        bot = BotState(bot_id, name, description, now, [], base36(index, 4), 1, share_url)
        if items is None:
            items = [schema_item(item, i + 1) for i, item in enumerate(TEMPLATES[0].items)]
        bot.items = items
        self._register_bot(bot)
        return bot

    def remove_bot(self, bot_id: str) -> None:
        del self.bots[bot_id]
        self.bot_ids.remove(bot_id)

    def set_bot_status(self, bot: BotState, status: str) -> str:
        """Set the status (``updated_at`` moves forward); returns the previous one."""
        previous = bot.status
        bot.status = status
        bot.updated_ms = max(self.now_ms(), bot.updated_ms + 1)
        return previous

    def add_field(self, bot: BotState, field: Mapping[str, Any]) -> None:
        """Append a schema item (a field unless ``kind`` says content), filling its defaults."""
        item = dict(field)
        if "name" not in item or not isinstance(item["name"], str):
            raise ValueError("a field needs a string name")
        if any(existing["name"] == item["name"] for existing in bot.items):
            raise ValueError(f"bot already has an item named {item['name']!r}")
        kind = item.setdefault("kind", "field")
        if kind == "field":
            item.setdefault("type", "short_text")
            item.setdefault("label", item["name"].replace("_", " ").title())
            item.setdefault("required", False)
            item.setdefault("id", f"field_{len(bot.items) + 1}")
        else:
            item.setdefault("id", f"cb_{len(bot.items) + 1}")
            item.setdefault("label", None)
        bot.items.append(item)
        bot.schema_version += 1
        bot.schema_changed()
        bot.updated_ms = max(self.now_ms(), bot.updated_ms + 1)

    # submissions --------------------------------------------------------------------------

    def insert_submission(
        self,
        bot: BotState,
        data: dict[str, Any],
        status: str,
        is_test: bool,
        from_api: bool,
    ) -> dict[str, Any]:
        submission_id, created_ms = bot.mint_id(self.now_ms(), self.rng)
        body = submission_body(
            submission_id,
            data,
            status,
            None,
            is_test,
            count_files(bot, data),
            0 if from_api else count_messages(data),
            bot.schema_version,
            created_ms,
            created_ms,
        )
        bot.append(submission_id, body)
        if self.config.bot_touch_on_submission:
            bot.updated_ms = max(bot.updated_ms, created_ms)
        return {
            "id": submission_id,
            "status": status,
            "created_at": iso_ms(created_ms),
            "data": data,
        }

    def random_answers(self, bot: BotState) -> dict[str, Any]:
        """Answers for a generated submission: every required field, most optional ones."""
        rng = self.rng
        answers: dict[str, Any] = {}
        for item in bot.fields():
            if not item["required"] and rng.random() < 0.2:
                continue
            template = FieldTemplate(
                item["name"], item["label"], item["type"], options=tuple(item.get("options", ()))
            )
            pool = value_pool(template, rng)
            answers[item["name"]] = rng.choice(pool) if pool else None
        return answers

    def replace_submission(
        self, bot: BotState, index: int, status: str | None, data: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply an edit; returns (before, after) as wire dicts. updated_at moves forward."""
        before = json.loads(bot.sub_bodies[index])
        after = dict(before)
        if data is not None:
            merged = dict(before["data"])
            merged.update(data)
            after["data"] = merged
            after["file_count"] = count_files(bot, merged)
            if after["message_count"]:
                after["message_count"] = count_messages(merged)
        if status is not None:
            after["status"] = status
        previous = parse_iso_ms(before["updated_at"])
        after["updated_at"] = iso_ms(max(self.now_ms(), previous + 1))
        bot.sub_bodies[index] = dumps(after)
        return before, after

    # webhooks -----------------------------------------------------------------------------

    def add_webhook(self, url: str, events: list[str], description: str | None) -> WebhookState:
        now = self.now_ms()
        hook = WebhookState(
            id=self.mint_global_id(now, "wh00"),
            url=url,
            events=events,
            description=description,
            secret="whsec_" + secrets.token_hex(24),
            created_ms=now,
            updated_ms=now,
        )
        self.webhooks[hook.id] = hook
        bisect.insort(self.webhook_ids, hook.id)
        return hook

    def remove_webhook(self, webhook_id: str) -> None:
        del self.webhooks[webhook_id]
        self.webhook_ids.remove(webhook_id)
