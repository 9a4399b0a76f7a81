"""Idempotency keys: fixed from a row's content before its first attempt, the same on every re-run.

A row without an ``_idempotency_key`` gets ``iozen-etl-`` + sha256 of the canonical JSON of its
bot id and body, so the same answers for the same bot give the same key in any file, on any
machine, and a changed row gives a new key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

KEY_PREFIX = "iozen-etl-"
REJECTED_PREFIX = "iozen-etl-rejected-"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_sha256(bot_id: str, body: Mapping[str, Any]) -> str:
    text = canonical_json({"intake_bot_id": bot_id, "body": body})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def derived_key(sha: str) -> str:
    return KEY_PREFIX + sha


def rejected_row_key(bot_id: str | None, cells: Mapping[str, str]) -> str:
    """The ledger key of a row rejected before sending: from its raw cells, never sent anywhere."""
    text = canonical_json({"intake_bot_id": bot_id, "cells": dict(cells)})
    return REJECTED_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()


def body_size(body: Mapping[str, Any]) -> int:
    """Bytes on the wire, measured as the client serialises the body (compact UTF-8 JSON)."""
    return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
