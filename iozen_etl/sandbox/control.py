"""The control surface over a sandbox's world: keys, ground truth and moves, for tests and
``/_sandbox/...`` (``admin.py``). ``Sandbox`` is this surface with the API in front of it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from iozen_etl.sandbox.clock import SandboxClock
from iozen_etl.sandbox.config import ALL_SCOPES, PLAN_RATE_LIMITS, SandboxConfig
from iozen_etl.sandbox.protocol import Problem
from iozen_etl.sandbox.validation import SUBMISSION_STATUSES
from iozen_etl.sandbox.webhooks import Delivery, DeliveryRecord, Outbox
from iozen_etl.sandbox.wire import Wire
from iozen_etl.sandbox.world import World


class WorldControl:
    """A seeded world, and every way to read or move it other than the API (thread-safe)."""

    def __init__(
        self, config: SandboxConfig | None, webhook_transport: httpx.BaseTransport | None
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.config.validate()
        self.clock = SandboxClock(real_time=self.config.real_time)
        self._lock = threading.RLock()
        self._world = World(self.config, self.clock)
        self._world.seed()
        self.api_key = self._world.new_key(ALL_SCOPES, self.config.plan)
        for key, scopes in self.config.extra_keys.items():
            self._world.new_key(tuple(scopes), self.config.plan, key)
        self._wire = Wire(self.config)
        self._outbox = Outbox(self._world, self._lock, webhook_transport)
        self._counts: Counter[tuple[str, str]] = Counter()  # (route name, method) -> requests

    def __repr__(self) -> str:  # never show keys
        return f"{type(self).__name__}(seed={self.config.seed}, bots={len(self._world.bots)})"

    def add_key(self, scopes: Iterable[str], plan: str = "business", key: str | None = None) -> str:
        """Add an API key with just these scopes; returns the key."""
        if plan not in PLAN_RATE_LIMITS:
            raise ValueError(f"plan must be pro or business, not {plan!r}")
        with self._lock:
            return self._world.new_key(tuple(scopes), plan, key)

    # ground truth -------------------------------------------------------------------------

    def truth_bots(self) -> list[dict[str, Any]]:
        """Every bot as ``GET /intake-bots/:id`` returns it (unwrapped), in list order."""
        with self._lock:
            world, wire = self._world, self._wire
            ids = wire.in_list_order(world.bot_ids)
            return [wire.as_sent(wire.bot_detail(world.bots[i])) for i in ids]

    def truth_submissions(self, bot_id: str | None = None) -> list[dict[str, Any]]:
        """A bot's submissions exactly as the list returns them, in order.

        Without ``bot_id``: every bot's, each with ``intake_bot_id`` added.
        """
        with self._lock:
            world, wire = self._world, self._wire
            if bot_id is not None:
                bodies = wire.in_list_order(world.bot(bot_id).sub_bodies)
                return [wire.parsed_item(body) for body in bodies]
            everything = []
            for each in wire.in_list_order(world.bot_ids):
                for body in wire.in_list_order(world.bots[each].sub_bodies):
                    item = wire.parsed_item(body)
                    item["intake_bot_id"] = each
                    everything.append(item)
            return everything

    def truth_submission(self, bot_id: str, submission_id: str) -> dict[str, Any]:
        """One submission as ``GET .../submissions/:id`` returns it (with messages)."""
        with self._lock:
            detail = self._wire.submission_detail(self._world.bot(bot_id), submission_id)
            return self._wire.as_sent(detail)

    def truth_webhooks(self) -> list[dict[str, Any]]:
        with self._lock:
            world, wire = self._world, self._wire
            ids = wire.in_list_order(world.webhook_ids)
            return [wire.as_sent(wire.with_extras(world.webhooks[i].wire())) for i in ids]

    def submission_total(self) -> int:
        with self._lock:
            return sum(len(bot.sub_ids) for bot in self._world.bots.values())

    def submission_ids(self, bot_id: str | None = None) -> list[str]:
        """Submission ids in list order, without parsing bodies (cheap at a million)."""
        with self._lock:
            world = self._world
            if bot_id is not None:
                return list(world.bot(bot_id).sub_ids)
            return [i for each in world.bot_ids for i in world.bots[each].sub_ids]

    def bot_ids(self) -> list[str]:
        with self._lock:
            return list(self._world.bot_ids)

    def request_count(self, route: str | None = None, method: str | None = None) -> int:
        """Requests received under /api/v1, by route name (see config.ROUTE_NAMES) and method."""
        with self._lock:
            return sum(
                n
                for (r, m), n in self._counts.items()
                if (route is None or r == route) and (method is None or m == method.upper())
            )

    # webhook deliveries -------------------------------------------------------------------

    def deliver_due(self) -> int:
        """Send every webhook delivery due on the sandbox clock; returns how many were tried.

        The world lock is not held while sending, so a receiver may call the sandbox back.
        """
        return self._outbox.deliver_due()

    def deliveries(self) -> list[DeliveryRecord]:
        """Every delivery attempt so far, oldest first."""
        return self._outbox.log()

    def pending_deliveries(self) -> list[Delivery]:
        return self._outbox.pending()

    # world moves --------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward (the same as ``clock.advance``)."""
        self.clock.advance(seconds)

    def generate_submissions(
        self, bot_id: str, n: int, status: str | None = None, is_test: bool = False
    ) -> list[str]:
        """Create n submissions as if people used the bot; returns their ids, oldest first."""
        _check_status(status)
        with self._lock:
            world = self._world
            bot = world.bot(bot_id)
            made = []
            for _ in range(n):
                chosen = status or (
                    "IN_PROGRESS"
                    if world.rng.random() < self.config.in_progress_share
                    else "COMPLETED"
                )
                data = world.random_answers(bot)
                created = world.insert_submission(bot, data, chosen, is_test, from_api=False)
                if chosen == "COMPLETED":
                    self._outbox.emit_submission("submission.completed", bot, created)
                made.append(created["id"])
            return made

    def update_submission(
        self,
        bot_id: str,
        submission_id: str,
        *,
        status: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Edit a submission (answers merged in, status set); ``updated_at`` moves forward."""
        _check_status(status)
        with self._lock:
            bot = self._world.bot(bot_id)
            index = bot.position(submission_id)
            if index is None:
                raise Problem(404, "resource_not_found", {"resource": "submission"})
            before, after = self._world.replace_submission(
                bot, index, status, dict(data) if data is not None else None
            )
            if before["status"] != "COMPLETED" and after["status"] == "COMPLETED":
                self._outbox.emit_submission("submission.completed", bot, after)
            self._outbox.emit_submission("submission.updated", bot, after)

    def pause_bot(self, bot_id: str, status: str = "PAUSED") -> None:
        """Set a bot's status (bumps its ``updated_at``; fires intake-bot.status-changed)."""
        with self._lock:
            bot = self._world.bot(bot_id)
            previous = self._world.set_bot_status(bot, status)
            if previous != status:
                data = {"intake_bot": {"id": bot.id, "status": status, "previous_status": previous}}
                self._outbox.emit("intake-bot.status-changed", data)

    def delete_bot(self, bot_id: str) -> None:
        """Delete a bot and its submissions, as ioZen's app does: gone from the listing, 404."""
        with self._lock:
            self._world.bot(bot_id)
            self._world.remove_bot(bot_id)

    def add_field(self, bot_id: str, field: Mapping[str, Any]) -> None:
        """Append a schema item (a field unless ``kind`` says content).

        Bumps the bot's schema_version and updated_at.
        """
        with self._lock:
            self._world.add_field(self._world.bot(bot_id), field)

    def add_bot(
        self,
        name: str = "New Bot",
        fields: list[dict[str, Any]] | None = None,
        description: str = "Added while the sandbox runs",
    ) -> str:
        """Create a bot (the Customer Onboarding schema unless fields are given); returns its id."""
        with self._lock:
            return self._world.add_bot(name, fields, description).id


def _check_status(status: str | None) -> None:
    if status is not None and status not in SUBMISSION_STATUSES:
        raise ValueError(f"status must be one of {SUBMISSION_STATUSES}")
