"""The webhook endpoints: one snapshot of the list, written when it changed."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

from iozen_etl.api.errors import (
    FeatureNotAvailable,
    InsufficientScopes,
)
from iozen_etl.api.models import Webhook
from iozen_etl.sync import normalise
from iozen_etl.sync.client import SyncClient, counts_delta, request_counts
from iozen_etl.sync.lake import Lake, stamp
from iozen_etl.sync.reports import WebhooksReport
from iozen_etl.sync.state import (
    WEBHOOKS_STREAM,
    StateStore,
    utc_now_iso,
)


def sync_webhooks(
    client: SyncClient,
    lake: Lake,
    state: StateStore,
    *,
    clock: Callable[[], str] = utc_now_iso,
) -> WebhooksReport:
    """List every webhook endpoint; write the list as one snapshot file, empty or not, when it
    differs from the last one written (secrets are never listed)."""
    started = time.monotonic()
    stats_before = request_counts(client)
    synced_at = clock()
    hooks: list[Webhook] = []
    try:
        for page in client.iter_webhook_pages():
            hooks.extend(page.items)
    except (FeatureNotAvailable, InsufficientScopes) as refused:
        delta = counts_delta(stats_before, request_counts(client))
        return WebhooksReport(
            0, refused.code, int(delta.get("requests", 0)), time.monotonic() - started
        )
    digest = _webhooks_digest(hooks)
    last = state.get(WEBHOOKS_STREAM)
    changed = last is None or last.bot_schema_shape != digest
    if changed:
        # Written even when empty: the file is the whole list at synced_at, so an empty one says
        # every endpoint is gone (the warehouse replaces the table with the newest snapshot).
        table = normalise.webhooks_table(hooks, synced_at)
        lake.write("webhooks", None, stamp(synced_at), table)
    # Recorded every run: the stream's completed_at says when the API was last read.
    state.set_seen(
        WEBHOOKS_STREAM,
        "",
        bot_updated_at=synced_at,
        submission_count=len(hooks),
        schema_shape=digest,
    )
    delta = counts_delta(stats_before, request_counts(client))
    return WebhooksReport(
        len(hooks),
        None,
        int(delta.get("requests", 0)),
        time.monotonic() - started,
        files_written=1 if changed else 0,
    )


def _webhooks_digest(hooks: Sequence[Webhook]) -> str:
    """What the snapshot file would hold, short: an unchanged list writes no new file."""
    text = repr(sorted(hooks, key=lambda hook: hook.id))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
