"""The replay engine: each CSV row becomes one idempotent submission POST, exactly once.

Two passes over the file. The first reads it whole (encoding errors, the set of bots, the row
count) and, with the bots' schemas, checks every column, so a bad file stops before anything is
sent. The second validates each row, consults the ledger, commits ``pending``, hands the POST to
a thread pool and records the answer. Only this thread touches the ledger; the pool only sends.

A dry run reads the ledger (to tell already-created and held rows apart) but writes nothing
to it and sends nothing; it does write the rejects CSV, which is how it shows the bad rows.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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
from iozen_etl.replay.csvfile import (
    BOT_ID_COLUMN,
    IDEMPOTENCY_KEY_COLUMN,
    REJECTS_COLUMNS,
    RESERVED_COLUMNS,
    CsvFileError,
    CsvReader,
    CsvRow,
)
from iozen_etl.replay.keys import derived_key, rejected_row_key
from iozen_etl.replay.ledger import Ledger, epoch_of
from iozen_etl.replay.rows import BotForm, Prepared, Problem, Rejected, prepare_row
from iozen_etl.settings import DataPaths

KEY_LIFETIME_S = 24 * 3600.0
# An hour short of the server's key lifetime: the server starts its 24 h when the request
# arrives, which may be later than we stamped it, and a resend itself takes time to land.
HOLD_AFTER_S = KEY_LIFETIME_S - 3600.0
MAX_PROBLEMS_KEPT = 1000
MAX_REKEYS = 3
REJECTS_SUFFIX = ".rejects.csv"

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


@dataclass(frozen=True)
class RowProblem:
    """A row needing attention: rejected, in conflict or held. Never holds an answer value."""

    row: int
    outcome: str
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", {self.field}" if self.field else "")
        return f"{where}: {self.outcome}: {self.reason}"


@dataclass(frozen=True)
class ReplayProgress:
    rows_total: int
    rows_done: int
    created: int
    already_created: int
    rejected: int
    conflicts: int
    pending: int
    held: int


@dataclass(frozen=True)
class ReplayReport:
    """What one replay of one file did; counts and reasons only, no answer values."""

    file: str
    dry_run: bool
    rows: int
    created: int
    already_created: int
    rejected: int
    conflicts: int
    pending: int
    held: int
    would_send: int
    posts_sent: int
    stopped_reason: str | None
    rejects_path: str | None
    ignored_columns: tuple[str, ...]
    problems: tuple[RowProblem, ...]
    seconds: float

    @property
    def complete(self) -> bool:
        """Every row is created (now or before) and nothing was left behind."""
        return (
            self.stopped_reason is None
            and self.rejected == self.conflicts == self.pending == self.held == 0
        )

    def metadata(self) -> dict[str, int | float | str]:
        """Facts for Dagster materialisation metadata."""
        facts: dict[str, int | float | str] = {
            "file": self.file,
            "rows": self.rows,
            "created": self.created,
            "already_created": self.already_created,
            "rejected": self.rejected,
            "conflicts": self.conflicts,
            "pending": self.pending,
            "held": self.held,
            "posts_sent": self.posts_sent,
            "seconds": round(self.seconds, 3),
        }
        if self.dry_run:
            facts["would_send"] = self.would_send
        if self.stopped_reason:
            facts["stopped_reason"] = self.stopped_reason
        if self.rejects_path:
            facts["rejects_path"] = self.rejects_path
        return facts

    def summary(self) -> str:
        verb = "would send" if self.dry_run else "created"
        first = self.would_send if self.dry_run else self.created
        return (
            f"{Path(self.file).name}: {self.rows} rows; {verb} {first}, already created "
            f"{self.already_created}, rejected {self.rejected}, conflicts {self.conflicts}, "
            f"pending {self.pending}, held {self.held}"
        )


def rejects_path_for(csv_path: Path) -> Path:
    """``<name>.rejects.csv`` beside the input."""
    return csv_path.with_name(csv_path.stem + REJECTS_SUFFIX)


def is_settled(path: Path, now: float, min_age_s: float) -> bool:
    """True when the file exists and has not changed for ``min_age_s`` (wall-clock seconds)."""
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return False
    return path.is_file() and now - modified >= min_age_s


def inbox_files(inbox: Path, now: float, min_age_s: float) -> list[Path]:
    """CSV files in the inbox ready to replay: settled, and not a rejects file we wrote."""
    if not inbox.is_dir():
        return []
    return sorted(
        path
        for path in inbox.iterdir()
        if path.suffix.lower() == ".csv"
        and not path.name.lower().endswith(REJECTS_SUFFIX)
        and not path.name.startswith(".")
        and is_settled(path, now, min_age_s)
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
    with CsvReader(csv_path) as reader:
        header = reader.header
        bot_ids, rows_total = _scan(reader)
    if bot_id is None and BOT_ID_COLUMN not in header:
        raise CsvFileError(f"{csv_path.name}: no bot given: pass --bot or add a _bot_id column")
    forms = _fetch_forms(client, csv_path, bot_id, bot_ids)
    ignored = _check_columns(csv_path, header, forms, ignore_unknown_columns)
    run = _Run(
        client=client,
        csv_path=csv_path,
        header=header,
        dropped=frozenset(ignored) | frozenset(REJECTS_COLUMNS),
        default_bot=bot_id,
        forms=forms,
        ledger=Ledger(paths.state_db, read_only=dry_run),
        dry_run=dry_run,
        force=force,
        wall_clock=wall_clock,
        progress=progress,
        rows_total=rows_total,
    )
    try:
        run.replay(concurrency)
    finally:
        run.ledger.close()
        run.rejects.close()
    return ReplayReport(
        file=str(csv_path.resolve()),
        dry_run=dry_run,
        rows=rows_total,
        created=run.counts["created"],
        already_created=run.counts["already_created"],
        rejected=run.counts["rejected"],
        conflicts=run.counts["conflict"],
        pending=run.counts["pending"],
        held=run.counts["held"],
        would_send=run.counts["would_send"],
        posts_sent=run.posts_sent,
        stopped_reason=run.stopped_reason,
        rejects_path=str(run.rejects.path) if run.rejects.written else None,
        ignored_columns=tuple(ignored),
        problems=tuple(run.problems),
        seconds=time.monotonic() - started,
    )


def _scan(reader: CsvReader) -> tuple[set[str], int]:
    bot_position = reader.header.index(BOT_ID_COLUMN) if BOT_ID_COLUMN in reader.header else None
    bots: set[str] = set()
    rows = 0
    for row in reader:
        rows += 1
        if bot_position is not None and bot_position < len(row.cells):
            value = row.cells[bot_position].strip()
            if value:
                bots.add(value)
    return bots, rows


def _fetch_forms(
    client: IozenClient, csv_path: Path, default_bot: str | None, bot_ids: set[str]
) -> dict[str, BotForm | None]:
    forms: dict[str, BotForm | None] = {}
    for bot in sorted(bot_ids | ({default_bot} if default_bot else set())):
        try:
            intake_bot = client.get_intake_bot(bot)
        except ResourceNotFound as exc:
            if bot == default_bot:
                raise CsvFileError(
                    f"{csv_path.name}: intake bot {bot!r} not found (request id {exc.request_id})"
                ) from exc
            forms[bot] = None  # its rows are rejected; the other bots' rows go on
            continue
        forms[bot] = BotForm.from_schema(bot, intake_bot.schema or ())
    if not any(forms.values()):
        raise CsvFileError(f"{csv_path.name}: none of the file's bots exist: {', '.join(forms)}")
    return forms


def _check_columns(
    csv_path: Path, header: tuple[str, ...], forms: Mapping[str, BotForm | None], ignore: bool
) -> list[str]:
    known = [form for form in forms.values() if form is not None]
    unknown: list[str] = []
    for column in header:
        if column in RESERVED_COLUMNS or column in REJECTS_COLUMNS:
            continue
        if any(column in form.fields for form in known):
            continue
        if ignore:
            unknown.append(column)
            continue
        blocks = [form.bot_id for form in known if column in form.content_names]
        if blocks:
            raise CsvFileError(
                f"{csv_path.name}: column {column!r} is a content block of intake bot "
                f"{blocks[0]!r}, which takes no answers (nothing was sent)"
            )
        fields = sorted({name for form in known for name in form.fields})
        raise CsvFileError(
            f"{csv_path.name}: column {column!r} matches no field of intake bot(s) "
            f"{', '.join(form.bot_id for form in known)} (fields: {', '.join(fields)}); "
            "nothing was sent (use --ignore-unknown-columns to skip it)"
        )
    return unknown


@dataclass(frozen=True)
class _Sent:
    row: CsvRow
    cells: Mapping[str, str]
    prepared: Prepared
    wire_key: str  # the Idempotency-Key on the wire: the row's key unless it was re-keyed


class _RejectsFile:
    """The rejects CSV, written to a temporary name and moved into place when complete."""

    def __init__(self, csv_path: Path, header: tuple[str, ...]) -> None:
        self.path = rejects_path_for(csv_path)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._header = header
        self._handle: IO[str] | None = None
        self._writer: Any = None
        self.written = False

    def add(self, row: CsvRow, reason: str) -> None:
        if self._handle is None:
            self._handle = self._tmp.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._handle)
            # _row and _reason first: the reason is what a person reads first, and extra cells
            # of an over-long row stay at the end instead of landing under these columns.
            self._writer.writerow([*REJECTS_COLUMNS, *self._header])
        self._writer.writerow([row.number, reason, *row.cells])

    def finish(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
            os.replace(self._tmp, self.path)
            self.written = True
        else:
            # A clean run leaves no stale rejects from an earlier one.
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._tmp.unlink(missing_ok=True)


@dataclass
class _Run:
    client: IozenClient
    csv_path: Path
    header: tuple[str, ...]
    dropped: frozenset[str]
    default_bot: str | None
    forms: Mapping[str, BotForm | None]
    ledger: Ledger
    dry_run: bool
    force: bool
    wall_clock: Callable[[], float]
    progress: Callable[[ReplayProgress], None] | None
    rows_total: int
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("created", "already_created", "rejected", "conflict", "pending", "held", "would_send"),
            0,
        )
    )
    problems: list[RowProblem] = field(default_factory=list)
    posts_sent: int = 0
    rows_done: int = 0
    stopped_reason: str | None = None
    seen_keys: dict[str, int] = field(default_factory=dict)
    rejects: _RejectsFile = field(init=False)

    def __post_init__(self) -> None:
        self.rejects = _RejectsFile(self.csv_path, self.header)
        self.file = str(self.csv_path.resolve())

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

    def _cells(self, row: CsvRow) -> tuple[dict[str, str], Problem | None]:
        cells = {
            name: (row.cells[position] if position < len(row.cells) else "")
            for position, name in enumerate(self.header)
            if name not in self.dropped
        }
        if len(row.cells) > len(self.header) and any(
            c.strip() for c in row.cells[len(self.header) :]
        ):
            return cells, Problem(
                None,
                f"row has {len(row.cells)} cells but the header has {len(self.header)} columns",
            )
        return cells, None

    def _decide(self, row: CsvRow) -> _Sent | None:
        """Everything short of sending; returns the POST to send, if any."""
        now = self.wall_clock()
        cells, shape_problem = self._cells(row)
        outcome = prepare_row(cells, self.default_bot, self.forms)
        if shape_problem is not None:
            outcome = Rejected(
                outcome.bot_id, rejected_row_key(outcome.bot_id, cells), (shape_problem,)
            )
        if isinstance(outcome, Prepared):
            first = self.seen_keys.setdefault(outcome.key, row.number)
            if first != row.number:
                outcome = _duplicate(outcome, cells, first)
        if isinstance(outcome, Rejected):
            self._reject(row, outcome, now)
            self._done()
            return None
        return self._decide_prepared(row, cells, outcome, now)

    def _decide_prepared(
        self, row: CsvRow, cells: Mapping[str, str], prepared: Prepared, now: float
    ) -> _Sent | None:
        prior = self.ledger.get(prepared.key)
        if prior is not None and prior.submission_id is not None:
            if prior.content_sha256 == prepared.content_sha256:
                if prior.outcome != "created" and not self.dry_run:
                    self.ledger.record_outcome(prepared.key, "created", None, now)
                self._finish("already_created")
                return None
            reason = (
                f"the row changed since it was created as submission {prior.submission_id} "
                "with this key; nothing was sent (the server would refuse it, or after 24 h "
                "create a second submission). Give the changed row a new _idempotency_key to "
                "create it, or restore the original answers"
            )
            self._flag(row, prepared.key, "conflict", None, reason, now)
            return None
        if (
            prior is not None
            and prior.in_doubt_since is not None
            and now - epoch_of(prior.in_doubt_since) > HOLD_AFTER_S
            and not self.force
        ):
            reason = (
                f"sent {prior.attempts} time(s) without a definite answer, first at "
                f"{prior.in_doubt_since}; the server forgets idempotency keys after 24 h, so "
                "sending it again could create a duplicate. Check the bot's submissions, then "
                "re-run with --force to send it anyway"
            )
            self._flag(row, prepared.key, "held", None, reason, now)
            return None
        if self.dry_run:
            self._finish("would_send")
            return None
        if self.stopped_reason is not None:
            self.ledger.record_unsent(
                prepared.key,
                self.file,
                row.number,
                prepared.bot_id,
                prepared.content_sha256,
                f"not sent: {self.stopped_reason}",
                now,
            )
            self._finish("pending")
            return None
        wire_key = prior.key_on_the_wire if prior is not None else prepared.key
        return _Sent(row, cells, prepared, wire_key)

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
            sent.prepared.bot_id,
            sent.prepared.data,
            status=sent.prepared.status,
            is_test=sent.prepared.is_test,
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
        key = sent.prepared.key
        error = future.exception()
        if error is None:
            created = future.result()
            self.ledger.record_created(
                key, created.id, created.request_id, sent.prepared.content_sha256, now
            )
            self._finish("created")
            return None
        if not isinstance(error, IozenError):
            # A bug, not an answer: the POST may have gone out, so the row stays in doubt.
            self.ledger.record_answer(
                key,
                "pending",
                f"unexpected error: {type(error).__name__}",
                None,
                now,
                definite=False,
            )
            self._finish("pending")
            raise error
        if isinstance(error, IdempotencyConflict) and _derived(sent.prepared):
            return self._rekey(sent, error, now)
        if isinstance(error, IdempotencyConflict):
            reason = (
                "the server holds a different body under this key (409 idempotency_conflict): "
                "the row changed after an earlier attempt reached the server, which kept the "
                "original; nothing new was created. Give the changed row a new _idempotency_key "
                f"to create it, or restore the original answers (request id {error.request_id})"
            )
            self.ledger.record_answer(key, "conflict", reason, error.request_id, now, definite=True)
            self._note(sent.row, "conflict", None, reason)
            self._finish("conflict")
        elif isinstance(error, ValidationFailed | BodyTooLarge | ResourceNotFound):
            field_name, reason = _refusal(error)
            self.ledger.record_answer(key, "rejected", reason, error.request_id, now, definite=True)
            self.rejects.add(sent.row, f"{field_name}: {reason}" if field_name else reason)
            self._note(sent.row, "rejected", field_name, reason)
            self._finish("rejected")
        else:
            definite = error.status is not None and 400 <= error.status < 500
            if isinstance(error, _STOPPING) and self.stopped_reason is None:
                self.stopped_reason = _stop_reason(error)
            reason = f"not created: {error}"
            self.ledger.record_answer(
                key, "pending", reason, error.request_id, now, definite=definite
            )
            self._finish("pending")
        return None

    def _rekey(self, sent: _Sent, error: IozenError, now: float) -> _Sent | None:
        """A 409 under a key derived from this very body, so no other body was ever sent
        under it: the server kept an attempt that was cut off mid-send (a truncated body
        cannot have created anything). The row goes again under a new key, fixed in the
        ledger before it is sent like any other."""
        key = sent.prepared.key
        generation = _generation(key, sent.wire_key) + 1
        if generation > MAX_REKEYS:
            reason = (
                f"the server kept answering 409 idempotency_conflict for keys derived from "
                f"this row ({MAX_REKEYS} tried); nothing was created (request id "
                f"{error.request_id})"
            )
            self.ledger.record_answer(key, "conflict", reason, error.request_id, now, definite=True)
            self._note(sent.row, "conflict", None, reason)
            self._finish("conflict")
            return None
        wire_key = f"{key}-r{generation}"
        reason = (
            "409 idempotency_conflict under a key derived from this very body: an earlier "
            f"attempt was cut off mid-send (request id {error.request_id}); re-keyed"
        )
        self.ledger.record_rekey(key, wire_key, reason, now)
        if self.stopped_reason is not None:
            self._finish("pending")
            return None
        return _Sent(sent.row, sent.cells, sent.prepared, wire_key)

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
            self._note(row, "rejected", only.field, only.reason)
        else:
            self._note(row, "rejected", None, full)
        self.counts["rejected"] += 1

    def _flag(
        self, row: CsvRow, key: str, outcome: str, field_name: str | None, reason: str, now: float
    ) -> None:
        if not self.dry_run:
            self.ledger.record_outcome(key, outcome, reason, now)
        self._note(row, outcome, field_name, reason)
        self._finish(outcome)

    def _note(self, row: CsvRow, outcome: str, field_name: str | None, reason: str) -> None:
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(RowProblem(row.number, outcome, field_name, reason))

    def _finish(self, outcome: str) -> None:
        self.counts[outcome] += 1
        self._done()

    def _done(self) -> None:
        self.rows_done += 1
        if self.progress is not None:
            counts = self.counts
            self.progress(
                ReplayProgress(
                    rows_total=self.rows_total,
                    rows_done=self.rows_done,
                    created=counts["created"],
                    already_created=counts["already_created"],
                    rejected=counts["rejected"],
                    conflicts=counts["conflict"],
                    pending=counts["pending"],
                    held=counts["held"],
                )
            )


def _derived(prepared: Prepared) -> bool:
    return prepared.key == derived_key(prepared.content_sha256)


def _generation(key: str, wire_key: str) -> int:
    suffix = wire_key.removeprefix(key + "-r")
    return int(suffix) if wire_key != key and suffix.isdigit() else 0


def _duplicate(prepared: Prepared, cells: Mapping[str, str], first: int) -> Rejected:
    if cells.get(IDEMPOTENCY_KEY_COLUMN, "").strip():
        reason = f"same _idempotency_key as row {first}; each row needs its own key"
    else:
        reason = (
            f"same bot and answers as row {first}, so it is the same submission; give each "
            "row its own _idempotency_key to create both"
        )
    return Rejected(
        prepared.bot_id,
        rejected_row_key(prepared.bot_id, cells),
        (Problem(None, reason),),
    )


def _refusal(error: IozenError) -> tuple[str | None, str]:
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
    message = error.message if isinstance(error, IozenError) else str(error)
    return None, f"the API refused the row: {message} ({where})"


def _stop_reason(error: IozenError) -> str:
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
