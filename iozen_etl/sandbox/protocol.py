"""The sandbox's wire vocabulary: requests, responses, error envelopes and small parsers."""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_BODY_BYTES = 1_048_576
DEFAULT_LIMIT = 50
MAX_LIMIT = 100

MESSAGES = {
    "validation_failed": "Validation failed",
    "authentication_required": "Missing or invalid API key",
    "insufficient_scopes": "API key lacks required scopes for this endpoint",
    "feature_not_available": "Your plan does not include this feature",
    "workspace_archived": "This workspace has been archived",
    "resource_not_found": "Resource not found",
    "rate_limit_exceeded": "Rate limit exceeded",
    "plan_limit_exceeded": "Plan limit exceeded",
    "idempotency_conflict": "Idempotency key was already used with a different request body",
    "internal_error": "An internal error occurred",
}


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, the form every stored and sent body uses."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SandboxRequest:
    method: str
    path: str  # percent-decoded
    query: str  # raw query string
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""


@dataclass(frozen=True)
class SandboxResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    drop: bool = False  # close the connection without answering

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


@dataclass
class Outcome:
    """What an endpoint made: its status, body and own headers (before the common ones)."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def ok(data: Any) -> Outcome:
    """A 200 with the success envelope around ``data``."""
    return Outcome(200, dumps({"success": True, "data": data}))


class Problem(Exception):
    """An error answer: raised anywhere below ``handle`` and turned into the envelope."""

    def __init__(self, status: int, code: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {dict(details or {})}")
        self.status = status
        self.code = code
        self.details = dict(details or {})
        self.message = MESSAGES.get(code, code)
        self.extra_headers: list[tuple[str, str]] = []


def invalid(path: list[str | int], message: str, code: str = "invalid_type") -> Problem:
    return Problem(400, "validation_failed", {"issues": [issue(path, message, code)]})


def issue(path: list[str | int], message: str, code: str) -> dict[str, Any]:
    return {"path": path, "message": message, "code": code}


def problem_body(problem: Problem) -> bytes:
    error = {"code": problem.code, "message": problem.message, "details": problem.details}
    return dumps({"success": False, "error": error})


def problem_response(
    problem: Problem, request_id: str, rate_headers: list[tuple[str, str]]
) -> SandboxResponse:
    """The error envelope as an answer, with the request id and rate-limit headers."""
    headers = (
        ("Content-Type", "application/json"),
        ("X-Request-Id", request_id),
        *rate_headers,
        *problem.extra_headers,
    )
    return SandboxResponse(problem.status, headers, problem_body(problem))


def new_request_id() -> str:
    """``req_`` and 24 random hex characters (docs/decisions.md #22)."""
    return "req_" + secrets.token_hex(12)


def bearer(header: str) -> str:
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def parse_query(raw: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(raw, keep_blank_values=True):
        values.setdefault(name, value)
    return values


def parse_limit(query: Mapping[str, str]) -> int:
    if "limit" not in query:
        return DEFAULT_LIMIT
    text = query["limit"].strip()
    if not text.isascii() or not text.isdigit():
        raise invalid(["limit"], "Expected an integer between 1 and 100", "invalid_type")
    value = int(text)
    if value < 1:
        raise invalid(["limit"], "Expected an integer between 1 and 100", "too_small")
    return min(value, MAX_LIMIT)


def json_body(raw: bytes) -> Any:
    if len(raw) > MAX_BODY_BYTES:
        raise invalid([], f"Request body exceeds {MAX_BODY_BYTES} bytes", "too_big")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid([], "Request body is not valid JSON", "invalid_json") from None


def body_fingerprint(raw: bytes) -> str:
    try:
        return "json:" + json.dumps(json.loads(raw), sort_keys=True, ensure_ascii=False)
    except (ValueError, UnicodeDecodeError):
        return "raw:" + raw.hex()


def reason(status: int) -> str:
    reasons = {
        200: "OK",
        201: "Created",
        204: "No Content",
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        429: "Too Many Requests",
        500: "Internal Server Error",
    }
    return reasons.get(status, "Unknown")
