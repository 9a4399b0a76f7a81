"""The receiver as an ASGI app (Starlette): check, keep, answer; the work happens later.

``POST /`` takes one delivery. In order: the body is read up to ``max_body`` bytes (413 past
it), the signature and timestamp are checked against the raw bytes (401), the body must be a
JSON object with an ``id`` and a ``type``, its id agreeing with ``X-IoZen-Event-Id`` when that
is sent (400); then the event is kept (``EventStore.add``, fsync'd) and only then answered 200,
a redelivery of a kept id too. Answers carry a status word and nothing of why: the reason goes
to this process's log, which never holds the secret or a body.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from iozen_etl.receiver.events import EventStore, StoredEvent
from iozen_etl.receiver.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Rejected,
    check_signature,
)

# The API's own request body limit: an event carries one submission, which fits in it.
MAX_BODY_BYTES = 1_048_576
STATUS_WORDS = {400: "bad request", 401: "unauthorized", 413: "too large"}

log = logging.getLogger("iozen_etl.receiver")


def create_app(
    secret: str,
    store: EventStore,
    *,
    clock: Callable[[], float] = time.time,
    max_body: int = MAX_BODY_BYTES,
) -> Starlette:
    """The receiver for one endpoint's ``secret``, keeping events in ``store``."""
    if not secret:
        raise ValueError("the webhook secret is empty")

    async def receive(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, max_body)
            headers = request.headers
            check_signature(
                secret,
                body,
                headers.get(SIGNATURE_HEADER),
                headers.get(TIMESTAMP_HEADER),
                now=clock(),
            )
            event = _event_of(body, headers.get(EVENT_ID_HEADER), clock())
        except Rejected as rejected:
            log.warning("webhook delivery refused (%d): %s", rejected.status, rejected.reason)
            word = STATUS_WORDS.get(rejected.status, "refused")
            return JSONResponse({"error": word}, status_code=rejected.status)
        kept = await run_in_threadpool(store.add, event)
        return JSONResponse({"received": event.event_id, "duplicate": not kept})

    return Starlette(routes=[Route("/", receive, methods=["POST"])])


async def _read_body(request: Request, max_body: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise Rejected(413, f"Content-Length {declared} is over {max_body} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise Rejected(413, f"the body grew past {max_body} bytes")
    return bytes(body)


def _event_of(body: bytes, header_id: str | None, now: float) -> StoredEvent:
    try:
        text = body.decode("utf-8")
        payload: Any = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise Rejected(400, "the body is not UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise Rejected(400, "the body is not a JSON object")
    event_id, event_type = payload.get("id"), payload.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise Rejected(400, "the event has no string id or type")
    if header_id is not None and header_id != event_id:
        raise Rejected(400, "X-IoZen-Event-Id does not name the body's event")
    return StoredEvent.from_payload(event_id, payload, text, now)
