"""What several benchmarks share: a sandbox served by its own process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def sandbox_process(*options: str) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of a sandbox served by a child process until the block ends."""
    child = subprocess.Popen(
        [sys.executable, "-m", "iozen_etl.sandbox", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        found: dict[str, str] = {}
        while len(found) < 2:
            line = child.stdout.readline()
            if not line:
                raise RuntimeError("the sandbox exited before printing its address")
            name, _, value = line.strip().partition("=")
            if name in ("IOZEN_BASE_URL", "IOZEN_API_KEY"):
                found[name] = value
        yield found["IOZEN_BASE_URL"], found["IOZEN_API_KEY"]
    finally:
        child.terminate()
        child.wait(timeout=30)
