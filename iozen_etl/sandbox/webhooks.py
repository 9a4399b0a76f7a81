"""Outbound webhook events: signing and the delivery queue, backing off (docs/decisions.md #20-21).

Deliveries wait in a queue ordered by due time on the sandbox clock; ``Outbox.deliver_due``
sends the ones that are due, so tests drive retries by advancing the clock, never by sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from iozen_etl.sandbox.protocol import dumps
from iozen_etl.sandbox.state import BotState
from iozen_etl.sandbox.timefmt import iso_ms
from iozen_etl.sandbox.wire import wire_times
from iozen_etl.sandbox.world import World

EVENT_TYPES = (
    "submission.completed",
    "submission.updated",
    "contact.created",
    "contact.updated",
    "intake-bot.status-changed",
)
MAX_CONSECUTIVE_FAILS = 10  # then the endpoint is disabled
MAX_ATTEMPTS = 10  # per event
USER_AGENT = "ioZen-Webhooks/1.0"


def signature(secret: str, body: bytes, timestamp: int, variant: str = "body") -> str:
    """``sha256=<hex>`` over the raw body, or over ``"<timestamp>." + body`` for the variant."""
    message = body if variant == "body" else str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    body: bytes,
    header_signature: str,
    header_timestamp: str,
    now: float,
    tolerance_s: float = 300.0,
    variant: str = "body",
) -> bool:
    """What a receiver does: check the timestamp is recent and the signature matches."""
    try:
        timestamp = int(header_timestamp)
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, body, timestamp, variant)
    return hmac.compare_digest(expected, header_signature)


@dataclass
class Delivery:
    event_id: str
    event_type: str
    webhook_id: str
    body: bytes
    due: float  # sandbox seconds
    attempt: int = 1


def backoff_s(base: float, attempt: int) -> float:
    """Wait after failed attempt ``attempt`` (1-based): base, 2*base, 4*base, ..."""
    return float(base * 2 ** (attempt - 1))


@dataclass(frozen=True)
class DeliveryRecord:
    """One attempt, as the sandbox saw it (for tests and ``/_sandbox/deliveries``)."""

    event_id: str
    event_type: str
    webhook_id: str
    attempt: int
    at: float
    ok: bool
    status: int | None
    error: str | None


class Outbox:
    """The events waiting for delivery, and every attempt made, over one world's webhooks."""

    def __init__(
        self, world: World, lock: threading.RLock, transport: httpx.BaseTransport | None
    ) -> None:
        self._world = world
        self._config = world.config
        self._clock = world.clock
        self._lock = lock  # held by the caller of emit and forget; taken by deliver_due
        self._transport = transport
        self._pending: list[Delivery] = []
        self._log: list[DeliveryRecord] = []

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Queue the event for every active webhook subscribed to its type."""
        world = self._world
        subscribers = [
            hook
            for hook_id in world.webhook_ids
            if (hook := world.webhooks[hook_id]).status == "active" and event_type in hook.events
        ]
        if not subscribers:
            return
        now = self._clock.now()
        event_id = "evt_" + world.mint_global_id(int(now * 1000), "ev00")
        payload = {
            "id": event_id,
            "type": event_type,
            "created_at": iso_ms(int(now * 1000)),
            "data": data,
        }
        body = wire_times(dumps(payload), self._config.timestamp_precision)
        for hook in subscribers:
            self._pending.append(Delivery(event_id, event_type, hook.id, body, now))

    def emit_submission(self, event_type: str, bot: BotState, wire: Mapping[str, Any]) -> None:
        submission = {
            "id": wire["id"],
            "intake_bot_id": bot.id,
            "status": wire["status"],
            "data": wire["data"],
            "created_at": wire["created_at"],
        }
        if "updated_at" in wire:
            submission["updated_at"] = wire["updated_at"]
        self.emit(event_type, {"submission": submission})

    def forget(self, webhook_id: str) -> None:
        """Drop the deliveries still waiting for this webhook."""
        self._pending = [d for d in self._pending if d.webhook_id != webhook_id]

    def deliver_due(self) -> int:
        """Send every delivery due on the sandbox clock; returns how many were tried.

        The lock is not held while sending, so a receiver may call the sandbox back.
        """
        with self._lock:
            now = self._clock.now()
            jobs = self._take_due(now)
        results = [
            (delivery, self._send(delivery, url, secret, now)) for delivery, url, secret in jobs
        ]
        with self._lock:
            for delivery, (ok, status, error) in results:
                self._record(delivery, ok, status, error, now)
        return len(jobs)

    def log(self) -> list[DeliveryRecord]:
        """Every delivery attempt so far, oldest first."""
        with self._lock:
            return list(self._log)

    def pending(self) -> list[Delivery]:
        """The deliveries waiting, soonest first."""
        with self._lock:
            return sorted(self._pending, key=lambda d: d.due)

    def _take_due(self, now: float) -> list[tuple[Delivery, str, str]]:
        """(delivery, url, secret) of each due delivery to an active webhook, off the queue."""
        due = [d for d in self._pending if d.due <= now]
        self._pending = [d for d in self._pending if d.due > now]
        jobs = []
        for delivery in due:
            hook = self._world.webhooks.get(delivery.webhook_id)
            if hook is not None and hook.status == "active":
                jobs.append((delivery, hook.url, hook.secret))
        return jobs

    def _send(
        self, delivery: Delivery, url: str, secret: str, now: float
    ) -> tuple[bool, int | None, str | None]:
        timestamp = int(now)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-IoZen-Event-Id": delivery.event_id,
            "X-IoZen-Event-Type": delivery.event_type,
            "X-IoZen-Timestamp": str(timestamp),
            "X-IoZen-Signature": signature(
                secret, delivery.body, timestamp, self._config.webhook_signature
            ),
        }
        try:
            with httpx.Client(
                transport=self._transport, timeout=self._config.webhook_timeout_s
            ) as client:
                answer = client.post(url, content=delivery.body, headers=headers)
        except httpx.HTTPError as error:
            return False, None, type(error).__name__
        return 200 <= answer.status_code < 300, answer.status_code, None

    def _record(
        self, delivery: Delivery, ok: bool, status: int | None, error: str | None, now: float
    ) -> None:
        """Log the attempt, update the webhook, and queue a retry or disable the webhook."""
        self._log.append(
            DeliveryRecord(
                delivery.event_id,
                delivery.event_type,
                delivery.webhook_id,
                delivery.attempt,
                now,
                ok,
                status,
                error,
            )
        )
        hook = self._world.webhooks.get(delivery.webhook_id)
        if hook is None:
            return
        now_ms = int(now * 1000)
        hook.last_delivery_ms = now_ms
        hook.last_delivery_ok = ok
        hook.updated_ms = max(hook.updated_ms, now_ms)
        if ok:
            hook.consecutive_fails = 0
            return
        hook.consecutive_fails += 1
        if hook.consecutive_fails >= MAX_CONSECUTIVE_FAILS:
            hook.status = "disabled"
            self.forget(hook.id)
            return
        if delivery.attempt < MAX_ATTEMPTS:
            delivery.attempt += 1
            delivery.due = now + backoff_s(self._config.webhook_retry_base_s, delivery.attempt - 1)
            self._pending.append(delivery)
