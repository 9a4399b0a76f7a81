"""The part of the API client the sync engine uses, and the request counts its reports take."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def request_counts(client: SyncClient) -> dict[str, float]:
    snapshot = client.stats.snapshot()
    return {key: float(value) for key, value in snapshot.items() if isinstance(value, int | float)}


def counts_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}
