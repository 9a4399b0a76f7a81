"""What the reliability suite counts, and the secrets it must never find.

Every reliability test adds to one ``Ledger`` per session: counts by category (``crashes``,
``faults``, ``storage``, ``contention``, ``hostile API``, ``hostile CSV``, ``secrets``), printed
as one line per category at the end of the run and written to
``test-artifacts/reliability.json`` (the figures in docs/reliability.md come from there). Tests
also hand it every API key they use and every place they wrote to, so the secrets check at the
end of the suite can look for the keys in all of them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ARTIFACT = Path("test-artifacts") / "reliability.json"


@dataclass
class Ledger:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)
    places: list[Path] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, category: str, what: str, n: int = 1) -> None:
        """Add ``n`` to ``what`` in ``category`` (a count of 0 still shows in the line)."""
        with self._lock:
            row = self.counts.setdefault(category, {})
            row[what] = row.get(what, 0) + n

    def watch(self, key: str, *places: Path) -> None:
        """A secret the suite must never find, and places to look for it at the end."""
        with self._lock:
            self.keys.add(key)
            self.places.extend(places)

    def look_in(self, *places: Path) -> None:
        with self._lock:
            self.places.extend(places)

    def said(self, texts: Iterable[str]) -> None:
        """Text a user saw (output, errors, logs): the secrets check reads it too."""
        with self._lock:
            self.texts.extend(texts)

    def lines(self) -> list[str]:
        return [
            f"{category}: " + ", ".join(f"{n:,} {what}" for what, n in row.items())
            for category, row in self.counts.items()
        ]

    def write(self, path: Path = ARTIFACT) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.counts, indent=2) + "\n")


def iterations(ci: int, long: int, *, long_run: bool) -> int:
    """How many times a seeded loop goes round: ``ci`` in the default run, ``long`` with --long."""
    return long if long_run else ci
