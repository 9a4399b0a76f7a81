"""Outbound webhook events: signing and the delivery queue, backing off (docs/decisions.md #20-21).

Deliveries wait in a queue ordered by due time on the sandbox clock; ``Sandbox.deliver_due``
sends the ones that are due, so tests drive retries by advancing the clock, never by sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

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
