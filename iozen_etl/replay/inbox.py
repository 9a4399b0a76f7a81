"""The inbox folder: which CSV files are ready to replay (the sensor's and the asset's view)."""

from __future__ import annotations

from pathlib import Path

from iozen_etl.replay.rejects import REJECTS_SUFFIX


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
