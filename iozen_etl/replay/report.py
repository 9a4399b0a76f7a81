"""What a replay tells: progress while it runs, a report at the end, and the tally behind both.

Counts and reasons only: nothing here ever holds an answer value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MAX_PROBLEMS_KEPT = 1000
# Every way a row can end one run; "would_send" only in a dry run.
ROW_OUTCOMES = (
    "created",
    "already_created",
    "rejected",
    "conflict",
    "pending",
    "held",
    "would_send",
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


@dataclass
class Tally:
    """The running count of one replay's row outcomes and the first problems, shown as progress."""

    rows_total: int
    progress: Callable[[ReplayProgress], None] | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROW_OUTCOMES, 0))
    problems: list[RowProblem] = field(default_factory=list)
    rows_done: int = 0

    def note(self, row: int, outcome: str, field_name: str | None, reason: str) -> None:
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(RowProblem(row, outcome, field_name, reason))

    def finish(self, outcome: str) -> None:
        """One more row is done, with this outcome."""
        self.counts[outcome] += 1
        self.rows_done += 1
        if self.progress is not None:
            self.progress(self.snapshot())

    def snapshot(self) -> ReplayProgress:
        counts = self.counts
        return ReplayProgress(
            rows_total=self.rows_total,
            rows_done=self.rows_done,
            created=counts["created"],
            already_created=counts["already_created"],
            rejected=counts["rejected"],
            conflicts=counts["conflict"],
            pending=counts["pending"],
            held=counts["held"],
        )
