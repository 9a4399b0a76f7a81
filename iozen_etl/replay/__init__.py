"""The write path: CSV rows replayed as idempotent submission POSTs, each created once."""

from __future__ import annotations

from iozen_etl.replay.csvfile import CsvFileError
from iozen_etl.replay.engine import (
    ReplayProgress,
    ReplayReport,
    RowProblem,
    inbox_files,
    is_settled,
    rejects_path_for,
    replay_csv,
)

__all__ = [
    "CsvFileError",
    "ReplayProgress",
    "ReplayReport",
    "RowProblem",
    "inbox_files",
    "is_settled",
    "rejects_path_for",
    "replay_csv",
]
