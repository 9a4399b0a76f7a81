"""Is a delivery ioZen's, and recent? ``X-IoZen-Signature`` checked against the raw body.

ioZen signs with HMAC-SHA256 and the endpoint's secret, as ``sha256=<hex>``; its documentation
stops before saying over what, so both readings are accepted: the raw body, and
``"<X-IoZen-Timestamp>." + body`` (docs/decisions.md). The timestamp is Unix seconds and must
be within ``TOLERANCE_S`` of the receiver's clock either way, so a captured delivery cannot be
replayed later. Each reason stays in the receiver's own log; the sender learns only 401.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "x-iozen-signature"
TIMESTAMP_HEADER = "x-iozen-timestamp"
EVENT_ID_HEADER = "x-iozen-event-id"
PREFIX = "sha256="
# As Stripe's and Slack's receivers do: five minutes covers clock drift and delivery queues.
TOLERANCE_S = 300


class Rejected(Exception):
    """A delivery the receiver refuses: ``status`` is what the sender is told, the message is
    for the receiver's own log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_signature(
    secret: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: float,
    tolerance_s: float = TOLERANCE_S,
) -> None:
    """Return if ``signature`` signs ``body`` (either reading) at a recent ``timestamp``;
    raise ``Rejected(401, why)`` otherwise."""
    if not signature or not timestamp:
        raise Rejected(401, "unsigned: no signature or no timestamp header")
    try:
        sent_at = int(timestamp.strip())
    except ValueError:
        raise Rejected(401, "the timestamp is not Unix seconds") from None
    if abs(now - sent_at) > tolerance_s:
        raise Rejected(401, f"stale: sent {now - sent_at:.0f} s from the receiver's clock")
    given = signature.strip()
    if given[: len(PREFIX)].lower() != PREFIX:
        raise Rejected(401, "the signature has no sha256= prefix")
    given_hex = given[len(PREFIX) :].lower().encode("ascii", "replace")
    key = secret.encode("utf-8")
    # Both readings are always computed and compared, so the time taken says nothing of which.
    matches = [
        hmac.compare_digest(hmac.new(key, message, hashlib.sha256).hexdigest().encode(), given_hex)
        for message in (body, timestamp.strip().encode("ascii", "replace") + b"." + body)
    ]
    if not any(matches):
        raise Rejected(401, "the signature does not match")
