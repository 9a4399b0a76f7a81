"""The nine API v1 endpoints, each from its inputs to an ``Outcome`` (``routes.py`` names them).

They run after the gate has let the request through, with the world lock held.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iozen_etl.sandbox.config import SandboxConfig
from iozen_etl.sandbox.paging import Pager
from iozen_etl.sandbox.protocol import Outcome, Problem, dumps, ok
from iozen_etl.sandbox.validation import validate_submission, validate_webhook
from iozen_etl.sandbox.webhooks import Outbox
from iozen_etl.sandbox.wire import Wire
from iozen_etl.sandbox.world import World


class Endpoints:
    """Reads and writes the world as the API does."""

    def __init__(self, world: World, wire: Wire, outbox: Outbox) -> None:
        self.config: SandboxConfig = world.config
        self._world = world
        self._wire = wire
        self._outbox = outbox
        self._pager = Pager(world.config, world.now_ms)

    # intake bots --------------------------------------------------------------------------

    def list_bots(self, query: Mapping[str, str]) -> Outcome:
        world, wire = self._world, self._wire
        positions, next_cursor = self._pager.page(world.bot_ids, query)
        items = [wire.with_extras(world.bots[world.bot_ids[i]].summary()) for i in positions]
        pagination = wire.pagination(next_cursor, len(world.bot_ids))
        return ok({"intake_bots": items, "pagination": pagination})

    def get_bot(self, bot_id: str) -> Outcome:
        detail = self._wire.bot_detail(self._world.bot(bot_id))
        return ok({"intake_bot": detail} if self.config.bot_detail_wrapped else detail)

    # submissions --------------------------------------------------------------------------

    def list_submissions(self, bot_id: str, query: Mapping[str, str]) -> Outcome:
        bot = self._world.bot(bot_id)
        positions, next_cursor = self._pager.page(bot.sub_ids, query)
        pagination = dumps(self._wire.pagination(next_cursor, len(bot.sub_ids)))
        if self.config.unknown_extras or self.config.list_order != "asc":
            items = b",".join(self._wire.submission_item(bot.sub_bodies[i]) for i in positions)
        else:  # the common case: one slice of stored bytes
            items = b",".join(bot.sub_bodies[positions.start : positions.stop])
        body = b"".join(
            (
                b'{"success":true,"data":{"submissions":[',
                items,
                b'],"schema":',
                bot.list_schema(),
                b',"pagination":',
                pagination,
                b"}}",
            )
        )
        return Outcome(200, body)

    def get_submission(self, bot_id: str, submission_id: str) -> Outcome:
        detail = self._wire.submission_detail(self._world.bot(bot_id), submission_id)
        return ok({"submission": detail})

    def create_submission(self, bot_id: str, body: Any) -> Outcome:
        world = self._world
        bot = world.bot(bot_id)
        data, status, is_test = validate_submission(
            bot,
            body,
            enforce_required=self.config.enforce_required,
            paused_bot_accepts=self.config.paused_bot_accepts,
        )
        quota = self.config.submission_quota
        if quota is not None and world.api_created >= quota:
            details = {"resource": "submissions", "current": world.api_created, "max": quota}
            raise Problem(429, "plan_limit_exceeded", details)
        created = world.insert_submission(bot, data, status, is_test, from_api=True)
        world.api_created += 1
        if status == "COMPLETED":
            self._outbox.emit_submission("submission.completed", bot, created)
        wire = {key: created[key] for key in ("id", "status", "created_at")}
        payload = {"success": True, "data": {"submission": wire}}
        return Outcome(self.config.create_status, dumps(payload))

    # webhooks -----------------------------------------------------------------------------

    def list_webhooks(self, query: Mapping[str, str]) -> Outcome:
        world, wire = self._world, self._wire
        positions, next_cursor = self._pager.page(world.webhook_ids, query)
        items = [wire.with_extras(world.webhooks[world.webhook_ids[i]].wire()) for i in positions]
        pagination = wire.pagination(next_cursor, len(world.webhook_ids))
        return ok({"webhooks": items, "pagination": pagination})

    def get_webhook(self, webhook_id: str) -> Outcome:
        return ok({"webhook": self._wire.with_extras(self._world.webhook(webhook_id).wire())})

    def create_webhook(self, body: Any) -> Outcome:
        url, events, description = validate_webhook(body)
        hook = self._world.add_webhook(url, events, description)
        payload = {"success": True, "data": {"webhook": hook.wire(with_secret=True)}}
        return Outcome(self.config.create_status, dumps(payload))

    def delete_webhook(self, webhook_id: str) -> Outcome:
        self._world.webhook(webhook_id)
        self._world.remove_webhook(webhook_id)
        self._outbox.forget(webhook_id)
        if self.config.delete_status == 204:
            return Outcome(204, b"")
        return ok({"deleted": True, "id": webhook_id})
