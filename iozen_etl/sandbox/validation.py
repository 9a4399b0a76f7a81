"""Body validation for the two POSTs: submissions against the bot's schema, and webhooks."""

from __future__ import annotations

import math
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from iozen_etl.sandbox.protocol import Problem, invalid, issue
from iozen_etl.sandbox.state import BotState
from iozen_etl.sandbox.webhooks import EVENT_TYPES

SUBMISSION_STATUSES = ("IN_PROGRESS", "COMPLETED")


def validate_submission(
    bot: BotState, body: Any, *, enforce_required: bool, paused_bot_accepts: bool
) -> tuple[dict[str, Any], str, bool]:
    """(data, status, is_test) of a valid create-submission body; raises Problem otherwise."""
    if not isinstance(body, dict):
        raise invalid([], "Expected an object", "invalid_type")
    issues: list[dict[str, Any]] = []
    status = body.get("status", "COMPLETED")
    if status not in SUBMISSION_STATUSES:
        issues.append(issue(["status"], "Expected IN_PROGRESS or COMPLETED", "invalid_enum_value"))
    is_test = body.get("is_test", False)
    if not isinstance(is_test, bool):
        issues.append(issue(["is_test"], "Expected boolean", "invalid_type"))
    data = body.get("data")
    if not isinstance(data, dict):
        issues.append(issue(["data"], "Required object", "invalid_type"))
        raise Problem(400, "validation_failed", {"issues": issues})
    if bot.status != "ACTIVE" and not paused_bot_accepts:
        issues.append(issue([], "Intake bot is not accepting submissions", "bot_paused"))
    items = {item["name"]: item for item in bot.items}
    for name, value in data.items():
        item = items.get(name)
        if item is None:
            issues.append(issue(["data", name], f"Unknown field {name!r}", "unrecognized_keys"))
        elif item.get("kind", "field") != "field":
            issues.append(issue(["data", name], "Content blocks take no answer", "content_block"))
        else:
            problem = check_value(item, value)
            if problem:
                issues.append(issue(["data", name], problem, "invalid_type"))
    if enforce_required and status == "COMPLETED":
        for item in bot.fields():
            if item.get("required") and data.get(item["name"]) in (None, "", []):
                issues.append(issue(["data", item["name"]], "Required", "missing_required"))
    if issues:
        raise Problem(400, "validation_failed", {"issues": issues})
    return data, status, is_test


def validate_webhook(body: Any) -> tuple[str, list[str], str | None]:
    """(url, events, description) of a valid create-webhook body; raises Problem otherwise."""
    if not isinstance(body, dict):
        raise invalid([], "Expected an object", "invalid_type")
    issues: list[dict[str, Any]] = []
    url = body.get("url")
    if not isinstance(url, str) or not acceptable_url(url):
        issues.append(issue(["url"], "Expected an https URL", "invalid_string"))
    events = body.get("events")
    if not isinstance(events, list) or not events:
        issues.append(issue(["events"], "Expected at least 1 event", "too_small"))
        events = []
    for index, event in enumerate(events):
        if event not in EVENT_TYPES:
            issues.append(
                issue(["events", index], f"Unknown event {event!r}", "invalid_enum_value")
            )
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 500):
        issues.append(issue(["description"], "At most 500 characters", "too_big"))
    if issues:
        raise Problem(400, "validation_failed", {"issues": issues})
    return str(url), list(dict.fromkeys(events)), description


def acceptable_url(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    # Sandbox-only: plain http to loopback, so tests can receive deliveries locally.
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def check_value(item: Mapping[str, Any], value: Any) -> str | None:
    """Why an answer does not fit its field, or None."""
    if value is None:
        return None
    kind = item.get("type")
    options = item.get("options") or []
    if kind in ("short_text", "long_text", "phone", "url", "hidden", "text"):
        return None if isinstance(value, str) else "Expected string"
    if kind == "email":
        if not isinstance(value, str):
            return "Expected string"
        return None if "@" in value.strip("@") else "Invalid email"
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok and math.isfinite(value) else "Expected number"
    if kind == "boolean":
        return None if isinstance(value, bool) else "Expected boolean"
    if kind == "date":
        if not isinstance(value, str):
            return "Expected string"
        try:
            time.strptime(value[:10], "%Y-%m-%d")
        except ValueError:
            return "Expected a date (YYYY-MM-DD)"
        return None
    if kind == "select":
        return None if isinstance(value, str) and value in options else f"Expected one of {options}"
    if kind == "multi_select":
        ok = isinstance(value, list) and all(isinstance(v, str) and v in options for v in value)
        return None if ok else f"Expected a list of {options}"
    if kind == "file":
        ok = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        return None if ok else "Expected a file name or list of file names"
    # Unknown types take any documented value shape.
    ok = isinstance(value, str | int | float | bool) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )
    return None if ok else "Expected string, number, boolean or list of strings"
