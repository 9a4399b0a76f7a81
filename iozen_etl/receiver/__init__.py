"""The webhook receiver's core: ioZen's signed events checked, and kept durably, before 2xx.

The ASGI app is ``iozen_etl.receiver.app.create_app``, imported only where it is served: the
pipeline reads the store and has no use for a web framework at start-up.
"""

from __future__ import annotations

from iozen_etl.receiver.events import EventStore, StoredEvent
from iozen_etl.receiver.signing import Rejected, check_signature

__all__ = ["EventStore", "Rejected", "StoredEvent", "check_signature"]
