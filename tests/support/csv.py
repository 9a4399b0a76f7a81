"""Replay input files: CSV written and read as a spreadsheet would, rows for the onboarding bot."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

HEADER = ("full_name", "email", "team_size", "start_date", "priority", "products", "consent")


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def onboarding_rows(n: int, start: int = 0) -> list[list[str]]:
    """``n`` valid rows under ``HEADER`` for the "Customer Onboarding" bot."""
    return [
        [f"Person {i}", f"p{i}@example.com", str(i), "2026-07-01", "high", "crm|api", "yes"]
        for i in range(start, start + n)
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
