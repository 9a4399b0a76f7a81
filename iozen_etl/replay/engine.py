"""The replay loop: each CSV row becomes one idempotent submission POST, exactly once.

Two passes over the file. The first (``checks``) reads it whole and checks every column against
the bots' schemas, so a bad file stops before anything is sent. The second validates each row,
consults the ledger, commits ``pending``, hands the POST to a thread pool and records the answer.
Only this thread touches the ledger; the pool only sends.

A dry run reads the ledger (to tell already-created and held rows apart) but writes nothing
to it and sends nothing; it does write the rejects CSV, which is how it shows the bad rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from iozen_etl.api import IozenClient
from iozen_etl.api.errors import (
    AuthenticationRequired,
    BodyTooLarge,
    FeatureNotAvailable,
    IdempotencyConflict,
    InsufficientScopes,
    IozenError,
    PlanLimitExceeded,
    RateLimitExceeded,
    ResourceNotFound,
    TransportError,
    ValidationFailed,
    WaitCeilingReached,
    WorkspaceArchived,
)
from iozen_etl.api.models import CreatedSubmission
from iozen_etl.replay import reasons
from iozen_etl.replay.checks import CheckedFile, check_file
from iozen_etl.replay.csvfile import IDEMPOTENCY_KEY_COLUMN, CsvReader, CsvRow
from iozen_etl.replay.keys import derived_key, rejected_row_key
from iozen_etl.replay.ledger import Ledger, LedgerEntry, epoch_of
from iozen_etl.replay.rejects import RejectsFile
from iozen_etl.replay.report import ReplayProgress, ReplayReport, Tally
from iozen_etl.replay.rows import Prepared, Problem, Rejected, prepare_row, row_cells
from iozen_etl.settings import DataPaths

KEY_LIFETIME_S = 24 * 3600.0
# An hour short of the server's key lifetime: the server starts its 24 h when the request
# arrives, which may be later than we stamped it, and a resend itself takes time to land.
HOLD_AFTER_S = KEY_LIFETIME_S - 3600.0
MAX_REKEYS = 3

# Errors that say every further POST would fail too: stop, leave the rest pending.
_STOPPING = (
    PlanLimitExceeded,
    AuthenticationRequired,
    InsufficientScopes,
    FeatureNotAvailable,
    WorkspaceArchived,
    RateLimitExceeded,
    WaitCeilingReached,
    TransportError,
)


def replay_csv(
    client: IozenClient,
    paths: DataPaths,
    csv_path: Path | str,
    *,
    bot_id: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    ignore_unknown_columns: bool = False,
    concurrency: int = 8,
    progress: Callable[[ReplayProgress], None] | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> ReplayReport:
    """Replay one CSV file as submission POSTs; raises CsvFileError when nothing can be sent."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    csv_path = Path(csv_path)
    started = time.monotonic()
    checked = check_file(client, csv_path, bot_id, ignore_unknown_columns=ignore_unknown_columns)
    run = _Run(
        client=client,
        csv_path=csv_path,
        checked=checked,
        default_bot=bot_id,
        ledger=Ledger(paths.state_db, read_only=dry_run),
        dry_run=dry_run,
        force=force,
        wall_clock=wall_clock,
        tally=Tally(checked.rows_total, progress),
    )
    try:
        run.replay(concurrency)
    finally:
        run.ledger.close()
        run.rejects.close()
    return run.report(seconds=time.monotonic() - started)


@dataclass(frozen=True)
class _Sent:
    row: CsvRow
    prepared: Prepared
    wire_key: str  # the Idempotency-Key on the wire: the row's key unless it was re-keyed


@dataclass
class _Run:
    """The second pass over one checked file; its methods read in the order a row goes."""

    client: IozenClient
    csv_path: Path
    checked: CheckedFile
    default_bot: str | None
    ledger: Ledger
    dry_run: bool
    force: bool
    wall_clock: Callable[[], float]
    tally: Tally
    posts_sent: int = 0
    stopped_reason: str | None = None
    seen_keys: dict[str, int] = field(default_factory=dict)
    rejects: RejectsFile = field(init=False)
    file: str = field(init=False)  # the resolved path, as the ledger and the report name it
    dropped: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.rejects = RejectsFile(self.csv_path, self.checked.header)
        self.file = str(self.csv_path.resolve())
        self.dropped = self.checked.dropped_columns

    def replay(self, concurrency: int) -> None:
        in_flight: dict[Future[CreatedSubmission], _Sent] = {}
        with ThreadPoolExecutor(concurrency, thread_name_prefix="iozen-replay") as pool:
            try:
                with CsvReader(self.csv_path) as reader:
                    for row in reader:
                        sent = self._decide(row)
                        if sent is not None:
                            self._submit(pool, in_flight, sent)
                        while len(in_flight) >= concurrency:
                            self._collect(pool, in_flight)
                while in_flight:
                    self._collect(pool, in_flight)
            finally:
                # Even on an unexpected error, record what the POSTs already in the air did.
                for future in list(in_flight):
                    future.exception()
                    self._answer(in_flight.pop(future), future)
        self.rejects.finish()

    def _decide(self, row: CsvRow) -> _Sent | None:
        """Everything short of sending; returns the POST to send, if any."""
        now = self.wall_clock()
        outcome = self._prepare(row)
        if isinstance(outcome, Rejected):
            self._reject(row, outcome, now)
            return None
        return self._decide_prepared(row, outcome, now)

    def _prepare(self, row: CsvRow) -> Prepared | Rejected:
        """The row checked on its own, then against the rows before it (a repeat is rejected)."""
        cells, shape_problem = row_cells(self.checked.header, self.dropped, row.cells)
        outcome = prepare_row(cells, self.default_bot, self.checked.forms)
        if shape_problem is not None:
            return Rejected(
                outcome.bot_id, rejected_row_key(outcome.bot_id, cells), (shape_problem,)
            )
        if isinstance(outcome, Prepared):
            first = self.seen_keys.setdefault(outcome.key, row.number)
            if first != row.number:
                own_key = bool(cells.get(IDEMPOTENCY_KEY_COLUMN, "").strip())
                reason = reasons.duplicate_row(first, own_key=own_key)
                bot_id = outcome.bot_id
                return Rejected(bot_id, rejected_row_key(bot_id, cells), (Problem(None, reason),))
        return outcome

    def _decide_prepared(self, row: CsvRow, prepared: Prepared, now: float) -> _Sent | None:
        prior = self.ledger.get(prepared.key)
        if prior is not None and prior.submission_id is not None:
            self._already_created(row, prepared, prior, now)
            return None
        held = self._hold_reason(prior, now) if prior is not None else None
        if held is not None:
            self._flag(row, prepared.key, "held", held, now)
            return None
        if self.dry_run:
            self.tally.finish("would_send")
            return None
        if self.stopped_reason is not None:
            self.ledger.record_unsent(
                prepared.key,
                self.file,
                row.number,
                prepared.bot_id,
                prepared.content_sha256,
                reasons.not_sent(self.stopped_reason),
                now,
            )
            self.tally.finish("pending")
            return None
        wire_key = prior.key_on_the_wire if prior is not None else prepared.key
        return _Sent(row, prepared, wire_key)

    def _already_created(
        self, row: CsvRow, prepared: Prepared, prior: LedgerEntry, now: float
    ) -> None:
        if prior.content_sha256 != prepared.content_sha256:
            reason = reasons.changed_since_created(prior.submission_id)
            self._flag(row, prepared.key, "conflict", reason, now)
            return
        if prior.outcome != "created" and not self.dry_run:
            self.ledger.record_outcome(prepared.key, "created", None, now)
        self.tally.finish("already_created")

    def _hold_reason(self, prior: LedgerEntry, now: float) -> str | None:
        """Why the row waits for a person: it was sent without a definite answer so long ago
        that the server may have forgotten its key. None when it may be sent."""
        since = prior.in_doubt_since
        if since is None or now - epoch_of(since) <= HOLD_AFTER_S or self.force:
            return None
        return reasons.held_in_doubt(prior.attempts, since)

    def _submit(
        self,
        pool: ThreadPoolExecutor,
        in_flight: dict[Future[CreatedSubmission], _Sent],
        sent: _Sent,
    ) -> None:
        p = sent.prepared
        # Committed before the POST leaves: a crash from here on finds the row pending.
        self.ledger.record_attempt(
            p.key, self.file, sent.row.number, p.bot_id, p.content_sha256, self.wall_clock()
        )
        self.posts_sent += 1
        future = pool.submit(
            self.client.create_submission,
            p.bot_id,
            p.data,
            status=p.status,
            is_test=p.is_test,
            idempotency_key=sent.wire_key,
        )
        in_flight[future] = sent

    def _collect(
        self, pool: ThreadPoolExecutor, in_flight: dict[Future[CreatedSubmission], _Sent]
    ) -> None:
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            resend = self._answer(in_flight.pop(future), future)
            if resend is not None:
                self._submit(pool, in_flight, resend)

    def _answer(self, sent: _Sent, future: Future[CreatedSubmission]) -> _Sent | None:
        """Record the answer to one POST; returns the POST to send again, if any."""
        now = self.wall_clock()
        error = future.exception()
        if error is None:
            self._created(sent, future.result(), now)
        elif not isinstance(error, IozenError):
            # A bug, not an answer: the POST may have gone out, so the row stays in doubt.
            self._in_doubt(sent, reasons.unexpected_error(error), now)
            raise error
        elif isinstance(error, IdempotencyConflict) and _derived(sent.prepared):
            return self._rekey(sent, error, now)
        elif isinstance(error, IdempotencyConflict):
            reason = reasons.server_kept_another_body(error.request_id)
            self._conflict(sent, reason, error, now)
        elif isinstance(error, ValidationFailed | BodyTooLarge | ResourceNotFound):
            self._refused(sent, error, now)
        else:
            self._not_created(sent, error, now)
        return None

    def _created(self, sent: _Sent, created: CreatedSubmission, now: float) -> None:
        p = sent.prepared
        self.ledger.record_created(p.key, created.id, created.request_id, p.content_sha256, now)
        self.tally.finish("created")

    def _in_doubt(self, sent: _Sent, reason: str, now: float) -> None:
        self.ledger.record_answer(sent.prepared.key, "pending", reason, None, now, definite=False)
        self.tally.finish("pending")

    def _rekey(self, sent: _Sent, error: IozenError, now: float) -> _Sent | None:
        """A 409 under a key derived from this very body, so no other body was ever sent
        under it: the server kept an attempt that was cut off mid-send (a truncated body
        cannot have created anything). The row goes again under a new key, fixed in the
        ledger before it is sent like any other."""
        key = sent.prepared.key
        generation = _generation(key, sent.wire_key) + 1
        if generation > MAX_REKEYS:
            self._conflict(sent, reasons.rekeys_exhausted(MAX_REKEYS, error.request_id), error, now)
            return None
        wire_key = f"{key}-r{generation}"
        self.ledger.record_rekey(key, wire_key, reasons.rekeyed(error.request_id), now)
        if self.stopped_reason is not None:
            self.tally.finish("pending")
            return None
        return _Sent(sent.row, sent.prepared, wire_key)

    def _conflict(self, sent: _Sent, reason: str, error: IozenError, now: float) -> None:
        key = sent.prepared.key
        self.ledger.record_answer(key, "conflict", reason, error.request_id, now, definite=True)
        self.tally.note(sent.row.number, "conflict", None, reason)
        self.tally.finish("conflict")

    def _refused(self, sent: _Sent, error: IozenError, now: float) -> None:
        field_name, reason = reasons.refusal(error)
        key = sent.prepared.key
        self.ledger.record_answer(key, "rejected", reason, error.request_id, now, definite=True)
        self.rejects.add(sent.row, f"{field_name}: {reason}" if field_name else reason)
        self.tally.note(sent.row.number, "rejected", field_name, reason)
        self.tally.finish("rejected")

    def _not_created(self, sent: _Sent, error: IozenError, now: float) -> None:
        definite = error.status is not None and 400 <= error.status < 500
        if isinstance(error, _STOPPING) and self.stopped_reason is None:
            self.stopped_reason = reasons.stop_reason(error)
        self.ledger.record_answer(
            sent.prepared.key,
            "pending",
            reasons.not_created(error),
            error.request_id,
            now,
            definite=definite,
        )
        self.tally.finish("pending")

    def _reject(self, row: CsvRow, rejected: Rejected, now: float) -> None:
        # The ledger and the rejects CSV name the field in each reason; the report's problem
        # carries the field apart when there is just one.
        full = rejected.reason
        if not self.dry_run:
            self.ledger.record_rejected(
                rejected.key, self.file, row.number, rejected.bot_id, full, now
            )
        self.rejects.add(row, full)
        if len(rejected.problems) == 1:
            only = rejected.problems[0]
            self.tally.note(row.number, "rejected", only.field, only.reason)
        else:
            self.tally.note(row.number, "rejected", None, full)
        self.tally.finish("rejected")

    def _flag(self, row: CsvRow, key: str, outcome: str, reason: str, now: float) -> None:
        if not self.dry_run:
            self.ledger.record_outcome(key, outcome, reason, now)
        self.tally.note(row.number, outcome, None, reason)
        self.tally.finish(outcome)

    def report(self, *, seconds: float) -> ReplayReport:
        counts = self.tally.counts
        return ReplayReport(
            file=self.file,
            dry_run=self.dry_run,
            rows=self.checked.rows_total,
            created=counts["created"],
            already_created=counts["already_created"],
            rejected=counts["rejected"],
            conflicts=counts["conflict"],
            pending=counts["pending"],
            held=counts["held"],
            would_send=counts["would_send"],
            posts_sent=self.posts_sent,
            stopped_reason=self.stopped_reason,
            rejects_path=str(self.rejects.path) if self.rejects.written else None,
            ignored_columns=self.checked.ignored_columns,
            problems=tuple(self.tally.problems),
            seconds=seconds,
        )


def _derived(prepared: Prepared) -> bool:
    return prepared.key == derived_key(prepared.content_sha256)


def _generation(key: str, wire_key: str) -> int:
    suffix = wire_key.removeprefix(key + "-r")
    return int(suffix) if wire_key != key and suffix.isdigit() else 0
