"""The part of the API client the sync engine uses, one submission read by id, and the request
counts its reports take."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from iozen_etl.api.models import IntakeBot, Page, Submission, Webhook


class SyncClient(Protocol):
    """The part of ``IozenClient`` the engine uses."""

    def iter_intake_bot_pages(
        self, resume_point: str | None = None
    ) -> Iterable[Page[IntakeBot]]: ...
    def get_intake_bot(self, bot_id: str) -> IntakeBot: ...
    def iter_submission_pages(
        self, bot_id: str, resume_point: str | None = None
    ) -> Iterable[Page[Submission]]: ...
    def get_submission(self, bot_id: str, submission_id: str) -> Submission: ...
    def iter_webhook_pages(self, resume_point: str | None = None) -> Iterable[Page[Webhook]]: ...
    @property
    def stats(self) -> Any: ...


def fetch_submission(client: SyncClient, bot_id: str, submission_id: str) -> Submission:
    """One submission by id, with the message count its list item would carry: the detail
    carries the messages but not their count, which the list sends."""
    sub = client.get_submission(bot_id, submission_id)
    if sub.message_count is None and sub.messages is not None:
        sub = replace(sub, message_count=len(sub.messages))
    return sub


def request_counts(client: SyncClient) -> dict[str, float]:
    snapshot = client.stats.snapshot()
    return {key: float(value) for key, value in snapshot.items() if isinstance(value, int | float)}


def counts_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}
