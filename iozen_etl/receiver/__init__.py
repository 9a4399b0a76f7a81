"""The webhook receiver's core: ioZen's signed events checked, and kept durably, before 2xx."""

from __future__ import annotations

from iozen_etl.receiver.app import create_app
from iozen_etl.receiver.events import EventStore, StoredEvent
from iozen_etl.receiver.signing import Rejected, check_signature

__all__ = ["EventStore", "Rejected", "StoredEvent", "check_signature", "create_app"]
