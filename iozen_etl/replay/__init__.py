"""The write path: CSV rows replayed as idempotent submission POSTs, each created once."""

from __future__ import annotations

from iozen_etl.replay.csvfile import CsvFileError
from iozen_etl.replay.engine import replay_csv
from iozen_etl.replay.inbox import inbox_files, is_settled
from iozen_etl.replay.rejects import rejects_path_for
from iozen_etl.replay.report import ReplayProgress, ReplayReport, RowProblem

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
