"""Typed records for the API's wire objects (``parsing`` reads them from JSON dicts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class SchemaItem:
    """One item of an intake bot's schema: a question field or a display-only content block."""

    id: str | None
    kind: str
    name: str
    label: str | None
    type: str | None
    required: bool | None
    options: tuple[str, ...]
    content_type: str | None
    body: str | None
    extra: Mapping[str, Any]


@dataclass(frozen=True)
class IntakeBot:
    """An intake bot; ``schema`` is set only when it came from the detail endpoint."""

    id: str
    name: str
    status: str
    submission_count: int
    created_at: str
    updated_at: str
    description: str | None
    share_url: str | None
    schema: tuple[SchemaItem, ...] | None
    schema_shape: str | None
    extra: Mapping[str, Any]


@dataclass(frozen=True)
class Message:
    """One turn of a submission's conversation."""

    id: str
    role: str
    content: str
    created_at: str
    extra: Mapping[str, Any]


@dataclass(slots=True)
class Submission:
    """A submission; ``messages`` is set only when it came from the detail endpoint.

    Not frozen: a frozen dataclass sets each field through ``object.__setattr__``, which slows
    building the hundred records of every page; nothing in the project mutates a record.
    """

    id: str
    intake_bot_id: str
    status: str | None
    data: Mapping[str, Any]
    ai_summary: str | None
    is_test: bool | None
    file_count: int | None
    message_count: int | None
    schema_version: int | None
    created_at: str
    updated_at: str
    messages: tuple[Message, ...] | None
    extra: Mapping[str, Any]


@dataclass(frozen=True)
class Webhook:
    """A webhook endpoint; ``secret`` is set only in the answer to its creation."""

    id: str
    url: str
    events: tuple[str, ...]
    status: str
    description: str | None
    last_delivery_at: str | None
    last_delivery_ok: bool | None
    consecutive_fails: int | None
    created_at: str
    updated_at: str
    # Left out of the repr: a logged or printed endpoint must not carry its signing secret.
    secret: str | None = field(repr=False)
    extra: Mapping[str, Any]

    def __repr__(self) -> str:
        # The signing secret is a credential: keep it out of logs and tracebacks.
        secret = "None" if self.secret is None else "'***'"
        return f"Webhook(id={self.id!r}, url={self.url!r}, status={self.status!r}, secret={secret})"


@dataclass(frozen=True)
class CreatedSubmission:
    """The answer to a submission POST (or its idempotent replay)."""

    id: str
    status: str
    created_at: str
    request_id: str | None
    status_code: int
    replayed: bool


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list endpoint, with the point to resume from after it."""

    items: list[T]
    has_more: bool
    next_cursor: str | None
    resume_point: str | None
    in_order: bool
    request_id: str | None
    schema: tuple[SchemaItem, ...] | None
