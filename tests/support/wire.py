"""The API on the wire: a client over a mock transport, answers and records as the API sends
them, and a transport wrapper that edits them in flight."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx

from iozen_etl.api import IozenClient, RetryPolicy
from iozen_etl.api.models import Submission
from tests.support.clock import FakeTime

API_KEY = "iozen_live_SECRETsecretSECRETsecret0123456789"
BASE_URL = "https://iozen.test/api/v1"


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response],
    time: FakeTime | None = None,
    retry: RetryPolicy | None = None,
    **kwargs: Any,
) -> IozenClient:
    time = time or FakeTime()
    return IozenClient(
        API_KEY,
        BASE_URL,
        transport=httpx.MockTransport(handler),
        retry=retry,
        clock=time.clock,
        wall_clock=time.wall,
        sleep=time.sleep,
        rng=random.Random(7),
        **kwargs,
    )


def ok(data: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"success": True, "data": data},
        headers={"X-Request-Id": "req_ok000000000000000000000", **headers},
    )


def fail(
    status: int, code: str, details: Any = None, request_id: str = "req_err00000000000000000000"
) -> httpx.Response:
    error: dict[str, Any] = {"code": code, "message": code.replace("_", " ")}
    if details is not None:
        error["details"] = details
    return httpx.Response(
        status, json={"success": False, "error": error}, headers={"X-Request-Id": request_id}
    )


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def bot(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"bot{n:03d}",
        "name": f"Bot {n}",
        "status": "ACTIVE",
        "submission_count": n,
        "created_at": f"2026-01-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
        "updated_at": "2026-02-01T00:00:00.000Z",
        **extra,
    }


def submission(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"sub{n:04d}",
        "data": {"full_name": f"Person {n}"},
        "status": "COMPLETED",
        "ai_summary": None,
        "is_test": False,
        "file_count": 0,
        "message_count": 2,
        "schema_version": 1,
        "created_at": f"2026-02-0{1 + n // 3600}T00:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
        "updated_at": "2026-02-10T00:00:00.000Z",
        **extra,
    }


def webhook(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"wh{n:03d}",
        "url": "https://hooks.example.com/iozen",
        "events": ["submission.completed"],
        "status": "active",
        "description": "handler",
        "last_delivery_at": None,
        "last_delivery_ok": None,
        "consecutive_fails": 0,
        "created_at": f"2026-01-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
        "updated_at": "2026-01-02T00:00:00.000Z",
        **extra,
    }


def page(key: str, items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {
        key: items,
        "pagination": {"has_more": next_cursor is not None, "next_cursor": next_cursor},
    }


def submission_record(
    sid: str, data: dict[str, Any], *, updated: str = "2026-02-22T11:05:00.000Z", **kw: Any
) -> Submission:
    """A decoded submission of bot ``bot1``; ``kw`` replaces any other field."""
    record = Submission(
        id=sid,
        intake_bot_id="bot1",
        status="COMPLETED",
        data=data,
        ai_summary=None,
        is_test=False,
        file_count=0,
        message_count=3,
        schema_version=1,
        created_at="2026-02-22T11:00:00Z",
        updated_at=updated,
        messages=None,
        extra={},
    )
    return replace(record, **kw)


def rewrite_json(
    inner: httpx.BaseTransport,
    on_request: Callable[[httpx.Request], httpx.Request] | None = None,
    on_response: Callable[[httpx.Request, Any], Any] | None = None,
) -> httpx.MockTransport:
    """Wrap a transport, editing requests and the parsed JSON of answers (fake at the transport)."""

    def handle(request: httpx.Request) -> httpx.Response:
        if on_request is not None:
            request = on_request(request)
        response = inner.handle_request(request)
        if on_response is None or response.status_code >= 300:
            return response
        body = on_response(request, json.loads(response.read()))
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        # ASCII-escaped JSON: it can carry any string, lone surrogates too (httpx's json= cannot).
        content = json.dumps(body).encode("ascii")
        return httpx.Response(
            response.status_code, headers=headers, content=content, request=request
        )

    return httpx.MockTransport(handle)
