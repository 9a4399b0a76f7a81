"""The wording of why a row needs a person, or why a run stopped.

Each reason says what happened and, where a person must act, what to do. None quotes a
cell's value (answers are personal data); request ids are quoted so a reason can be traced.
"""

from __future__ import annotations

from iozen_etl.api.errors import (
    BodyTooLarge,
    IozenError,
    PlanLimitExceeded,
    ResourceNotFound,
    TransportError,
    ValidationFailed,
)
from iozen_etl.replay.csvfile import BOT_ID_COLUMN


def changed_since_created(submission_id: str | None) -> str:
    return (
        f"the row changed since it was created as submission {submission_id} "
        "with this key; nothing was sent (the server would refuse it, or after 24 h "
        "create a second submission). Give the changed row a new _idempotency_key to "
        "create it, or restore the original answers"
    )


def held_in_doubt(attempts: int, in_doubt_since: str) -> str:
    return (
        f"sent {attempts} time(s) without a definite answer, first at "
        f"{in_doubt_since}; the server forgets idempotency keys after 24 h, so "
        "sending it again could create a duplicate. Check the bot's submissions, then "
        "re-run with --force to send it anyway"
    )


def duplicate_row(first: int, *, own_key: bool) -> str:
    """A row that is the same submission as row ``first``; ``own_key``: it was given a key."""
    if own_key:
        return f"same _idempotency_key as row {first}; each row needs its own key"
    return (
        f"same bot and answers as row {first}, so it is the same submission; give each "
        "row its own _idempotency_key to create both"
    )


def server_kept_another_body(request_id: str | None) -> str:
    return (
        "the server holds a different body under this key (409 idempotency_conflict): "
        "the row changed after an earlier attempt reached the server, which kept the "
        "original; nothing new was created. Give the changed row a new _idempotency_key "
        f"to create it, or restore the original answers (request id {request_id})"
    )


def rekeys_exhausted(tried: int, request_id: str | None) -> str:
    return (
        f"the server kept answering 409 idempotency_conflict for keys derived from "
        f"this row ({tried} tried); nothing was created (request id "
        f"{request_id})"
    )


def rekeyed(request_id: str | None) -> str:
    return (
        "409 idempotency_conflict under a key derived from this very body: an earlier "
        f"attempt was cut off mid-send (request id {request_id}); re-keyed"
    )


def not_sent(stopped_reason: str) -> str:
    return f"not sent: {stopped_reason}"


def not_created(error: IozenError) -> str:
    return f"not created: {error}"


def unexpected_error(error: BaseException) -> str:
    return f"unexpected error: {type(error).__name__}"


def refusal(error: IozenError) -> tuple[str | None, str]:
    """The field and reason for a row the API refused; the request id makes it traceable."""
    where = f"request id {error.request_id}"
    if isinstance(error, BodyTooLarge):
        return None, f"request body is {error.size:,} bytes, over the {error.limit:,}-byte limit"
    if isinstance(error, ResourceNotFound):
        return BOT_ID_COLUMN, f"the API says the intake bot does not exist ({where})"
    if isinstance(error, ValidationFailed) and error.issues:
        issue = error.issues[0]
        raw_path = issue.get("path")
        path = [str(part) for part in raw_path] if isinstance(raw_path, list) else []
        field_name = path[1] if len(path) >= 2 and path[0] == "data" else ".".join(path) or None
        code = issue.get("code")
        message = str(issue.get("message") or "invalid")
        detail = f"{message} ({code})" if code else message
        more = f" and {len(error.issues) - 1} more issue(s)" if len(error.issues) > 1 else ""
        return field_name, f"the API refused the row: {detail}{more} ({where})"
    return None, f"the API refused the row: {error.message} ({where})"


def stop_reason(error: IozenError) -> str:
    if isinstance(error, PlanLimitExceeded):
        return (
            f"plan limit reached ({error.resource or 'submissions'}: {error.current} of "
            f"{error.max}, request id {error.request_id}); the rest of the file is left pending"
        )
    if isinstance(error, TransportError):
        return f"the API could not be reached ({error.message}); the rest is left pending"
    return (
        f"{type(error).__name__}: {error.message} (request id {error.request_id}); "
        "the rest is left pending"
    )
