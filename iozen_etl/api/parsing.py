"""Lenient parsing of the API's JSON objects into the records of ``models``.

Parsing follows docs/decisions.md: unknown keys are kept in ``extra``, unknown schema item kinds are
skipped, both intake-bot detail shapes are read, enums stay free strings. Only a missing ``id``,
``created_at`` or ``updated_at`` (without which a record cannot be stored or ordered) or a value
of the wrong JSON type raises ``WireFormatError``, which the client reports as a malformed
response naming the request.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from iozen_etl.api.models import (
    CreatedSubmission,
    IntakeBot,
    Message,
    SchemaItem,
    Submission,
    Webhook,
)

logger = logging.getLogger(__name__)


class WireFormatError(ValueError):
    """A JSON object that cannot be read as the record it should be."""


_SCHEMA_ITEM_KEYS = frozenset(
    {"id", "kind", "name", "label", "type", "required", "options", "content_type", "body"}
)
_BOT_KEYS = frozenset(
    {
        "id",
        "name",
        "status",
        "submission_count",
        "created_at",
        "updated_at",
        "description",
        "share_url",
        "schema",
    }
)
# A list item as the reference documents it; the detail adds ``intake_bot_id`` and ``messages``.
_LISTED_SUBMISSION_KEYS = (
    "id",
    "status",
    "data",
    "ai_summary",
    "is_test",
    "file_count",
    "message_count",
    "schema_version",
    "created_at",
    "updated_at",
)
_SUBMISSION_KEYS = frozenset({*_LISTED_SUBMISSION_KEYS, "intake_bot_id", "messages"})
_MESSAGE_KEYS = frozenset({"id", "role", "content", "created_at"})
_WEBHOOK_KEYS = frozenset(
    {
        "id",
        "url",
        "events",
        "status",
        "description",
        "last_delivery_at",
        "last_delivery_ok",
        "consecutive_fails",
        "created_at",
        "updated_at",
        "secret",
    }
)
KNOWN_KINDS = frozenset({"field", "content"})
# One shared, read-only empty mapping: most records have no unknown keys, and an empty dict per
# record is an allocation the garbage collector counts (100 a page).
EMPTY: Mapping[str, Any] = MappingProxyType({})


def parse_schema(raw: Any) -> tuple[tuple[SchemaItem, ...], str | None]:
    """Schema items and the shape they came in: ``{"fields": [...]}`` or a bare (legacy) list."""
    if raw is None:
        return (), None
    if isinstance(raw, list):
        items, shape = raw, "legacy"
    elif isinstance(raw, Mapping) and isinstance(raw.get("fields"), list):
        items, shape = raw["fields"], "fields"
    else:
        raise WireFormatError("schema is neither a list nor an object with a 'fields' list")
    parsed = []
    for position, item in enumerate(items):
        schema_item = _schema_item(item, position)
        if schema_item is not None:
            parsed.append(schema_item)
    return tuple(parsed), shape


def _schema_item(raw: Any, position: int) -> SchemaItem | None:
    if not isinstance(raw, Mapping):
        logger.warning("schema item %d is not an object; skipped", position)
        return None
    kind = raw.get("kind") or "field"
    if kind not in KNOWN_KINDS:
        # The changelog asks clients to skip kinds they do not know (additive change).
        logger.info("schema item %d has unknown kind %r; skipped", position, kind)
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        logger.warning("schema item %d has no name; skipped", position)
        return None
    return SchemaItem(
        id=_opt_str(raw, "id"),
        kind=str(kind),
        name=name,
        label=_opt_str(raw, "label"),
        type=_opt_str(raw, "type"),
        required=_opt_bool(raw, "required"),
        options=tuple(_option(option) for option in _list(raw, "options")),
        content_type=_opt_str(raw, "content_type"),
        body=_opt_str(raw, "body"),
        extra=_extra(raw, _SCHEMA_ITEM_KEYS),
    )


def _option(raw: Any) -> str:
    if isinstance(raw, Mapping):
        for key in ("value", "label"):
            if isinstance(raw.get(key), str):
                return str(raw[key])
    return raw if isinstance(raw, str) else str(raw)


def parse_intake_bot(raw: Any, *, detail: bool) -> IntakeBot:
    """An intake bot from a list item or from the detail's ``data`` (wrapped or not)."""
    if detail and isinstance(raw, Mapping) and isinstance(raw.get("intake_bot"), Mapping):
        raw = raw["intake_bot"]
    obj = _object(raw, "intake bot")
    schema, shape = parse_schema(obj.get("schema")) if detail else ((), None)
    return IntakeBot(
        id=_required_str(obj, "id"),
        name=_str(obj, "name"),
        status=_str(obj, "status"),
        submission_count=_opt_int(obj, "submission_count") or 0,
        created_at=_required_str(obj, "created_at"),
        updated_at=_required_str(obj, "updated_at"),
        description=_opt_str(obj, "description"),
        share_url=_opt_str(obj, "share_url"),
        schema=schema if detail else None,
        schema_shape=shape,
        extra=_extra(obj, _BOT_KEYS),
    )


_LISTED_SUBMISSION = operator.itemgetter(*_LISTED_SUBMISSION_KEYS)


def parse_submission(raw: Any, *, bot_id: str, detail: bool) -> Submission:
    """A submission from a list item or the detail's ``data.submission``."""
    if not detail:
        return listed_submission_parser(bot_id)(raw)
    return parse_submission_general(raw, bot_id, detail)


def listed_submission_parser(bot_id: str) -> Callable[[Any], Submission]:
    """``parse_submission(raw, bot_id=bot_id, detail=False)`` as a one-argument function: the
    form a page's 100 items are parsed with (the hot path of every sync).

    A list item of exactly the documented keys and JSON types is read with one C-level lookup
    and type tests alone; anything else goes the general way. Both give the same record for the
    same input (the tests check it).
    """

    def parse(raw: Any) -> Submission:
        if type(raw) is dict and len(raw) == len(_LISTED_SUBMISSION_KEYS):
            try:
                id_, status, data, summary, is_test, files, messages, version, created, updated = (
                    _LISTED_SUBMISSION(raw)
                )
            except KeyError:
                return parse_submission_general(raw, bot_id, False)
            if (
                type(id_) is str
                and type(created) is str
                and type(updated) is str
                and type(status) is str
                and type(data) is dict
                and (summary is None or type(summary) is str)
                and type(is_test) is bool
                and type(files) is int
                and type(messages) is int
                and type(version) is int
                and id_
                and created
                and updated
            ):
                return Submission(
                    id_, bot_id, status, data, summary, is_test, files, messages, version,
                    created, updated, None, EMPTY,
                )  # fmt: skip
        return parse_submission_general(raw, bot_id, False)

    return parse


def parse_submission_general(raw: Any, bot_id: str, detail: bool) -> Submission:
    """Any submission object, key by key: what the listed fast path falls back to."""
    if detail and isinstance(raw, Mapping) and isinstance(raw.get("submission"), Mapping):
        raw = raw["submission"]
    # Exact-type tests first, which are what the JSON decoder produces, and the slower general
    # checks only when one fails.
    if type(raw) is not dict:
        raw = _object(raw, "submission")
    get = raw.get
    id_, created_at, updated_at = get("id"), get("created_at"), get("updated_at")
    if not (
        type(id_) is str
        and type(created_at) is str
        and type(updated_at) is str
        and id_
        and created_at
        and updated_at
    ):
        for key in ("id", "created_at", "updated_at"):
            _required_str(raw, key)  # raises, naming the first key that is wrong
    data = get("data")
    if data is None:
        data = EMPTY
    elif type(data) is not dict and not isinstance(data, Mapping):
        raise WireFormatError(f"submission {id_!r}: 'data' is not an object")
    status = get("status")
    ai_summary = get("ai_summary")
    intake_bot_id = get("intake_bot_id")
    is_test = get("is_test")
    file_count = get("file_count")
    message_count = get("message_count")
    schema_version = get("schema_version")
    messages = None
    if detail:
        messages = tuple(parse_message(message) for message in _list(raw, "messages"))
    return Submission(
        id_,
        intake_bot_id if type(intake_bot_id) is str and intake_bot_id else bot_id,
        # A null or missing status stays null: nothing to say it was COMPLETED or anything else.
        status if status is None or type(status) is str else str(status),
        data,  # freshly decoded JSON: ours, no copy
        ai_summary if ai_summary is None or type(ai_summary) is str else str(ai_summary),
        is_test if type(is_test) is bool else None,
        file_count if type(file_count) is int else _opt_int(raw, "file_count"),
        message_count if type(message_count) is int else _opt_int(raw, "message_count"),
        schema_version if type(schema_version) is int else _opt_int(raw, "schema_version"),
        created_at,
        updated_at,
        messages,
        EMPTY if raw.keys() <= _SUBMISSION_KEYS else _extra(raw, _SUBMISSION_KEYS),
    )


def parse_message(raw: Any) -> Message:
    obj = _object(raw, "message")
    return Message(
        id=_required_str(obj, "id"),
        role=_str(obj, "role"),
        content=_str(obj, "content"),
        created_at=_str(obj, "created_at"),
        extra=_extra(obj, _MESSAGE_KEYS),
    )


def parse_webhook(raw: Any) -> Webhook:
    """A webhook from a list item or a detail's ``data`` (wrapped in ``webhook`` or not)."""
    if isinstance(raw, Mapping) and isinstance(raw.get("webhook"), Mapping):
        raw = raw["webhook"]
    obj = _object(raw, "webhook")
    return Webhook(
        id=_required_str(obj, "id"),
        url=_str(obj, "url"),
        events=tuple(str(event) for event in _list(obj, "events")),
        status=_str(obj, "status"),
        description=_opt_str(obj, "description"),
        last_delivery_at=_opt_str(obj, "last_delivery_at"),
        last_delivery_ok=_opt_bool(obj, "last_delivery_ok"),
        consecutive_fails=_opt_int(obj, "consecutive_fails"),
        created_at=_required_str(obj, "created_at"),
        updated_at=_required_str(obj, "updated_at"),
        secret=_opt_str(obj, "secret"),
        extra=_extra(obj, _WEBHOOK_KEYS),
    )


def parse_created_submission(
    raw: Any, *, request_id: str | None, status_code: int, replayed: bool
) -> CreatedSubmission:
    if isinstance(raw, Mapping) and isinstance(raw.get("submission"), Mapping):
        raw = raw["submission"]
    obj = _object(raw, "created submission")
    return CreatedSubmission(
        id=_required_str(obj, "id"),
        status=_str(obj, "status"),
        created_at=_str(obj, "created_at"),
        request_id=request_id,
        status_code=status_code,
        replayed=replayed,
    )


def _object(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise WireFormatError(f"{what} is not a JSON object")
    return raw


def _required_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if type(value) is not str or not value:
        raise WireFormatError(f"object {obj.get('id')!r} lacks a string {key!r}")
    return value


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return "" if value is None else str(value)


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return None if value is None else str(value)


def _opt_bool(obj: Mapping[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    return value if isinstance(value, bool) else None


def _opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if type(value) is int:
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    return value if isinstance(value, list) else []


def _extra(obj: Mapping[str, Any], known: frozenset[str]) -> Mapping[str, Any]:
    if obj.keys() <= known:
        return EMPTY
    return {key: value for key, value in obj.items() if key not in known}
