"""Where the engine's time goes: py-spy samples of the thread holding the GIL during a sync.

The engine (bots and submissions into the lake and state, no Dagster, no load) runs as
``python -m bench.engine_run`` under ``py-spy record --gil`` against a sandbox of its own, in
both shapes; each sample is put in one bucket by the first matching frame of its stack, and the
buckets are printed as shares of the samples. Only the GIL holder is sampled because the engine
is bound by it: what one thread does in Python, the others wait for.

Needs py-spy (the bench extra) and the right to trace a child process (root, or ptrace_scope 0).

Run: ``python -m bench profile`` (``--sizes 100000`` by default).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.support import child_env
from bench.sync import SHAPES, sandbox_process

# (bucket, part of a frame's file path, function or None): a sample goes to the first bucket
# that any frame of its stack matches, so the order goes from the most specific to the most
# general.
BUCKETS: list[tuple[str, str, str | None]] = [
    ("start-up imports", "<frozen importlib", None),
    ("bot details", "iozen_etl/sync/bots.py", None),
    ("JSON decoding", "iozen_etl/api/exchange.py", "decode_json"),
    ("HTTP (httpx, h11)", "httpx/", None),
    ("client (envelope, records, paging)", "iozen_etl/api/", None),
    ("answers table", "iozen_etl/sync/normalise.py", "_answers"),
    ("other normalising", "iozen_etl/sync/normalise.py", None),
    ("Parquet writes", "iozen_etl/sync/lake.py", None),
    ("state (SQLite)", "iozen_etl/sync/state.py", None),
    ("engine bookkeeping", "iozen_etl/sync/", None),
]
RATE = 200  # samples a second
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>.*):\d+\)$")


def _bucket(stack: str) -> str:
    frames = [_FRAME.match(frame) for frame in stack.split(";")]
    found = [(m["path"], m["function"]) for m in frames if m is not None]
    for name, path_part, function in BUCKETS:
        if any(path_part in path and function in (None, fn) for path, fn in found):
            return name
    return "other"


def buckets(raw_profile: str) -> dict[str, float]:
    """Shares of py-spy's raw (collapsed-stack) output, by ``BUCKETS``, largest first."""
    counts: Counter[str] = Counter()
    for line in raw_profile.splitlines():
        stack, _, number = line.rpartition(" ")
        if number.isdigit():
            counts[_bucket(stack)] += int(number)
    total = sum(counts.values()) or 1
    return {name: round(100 * n / total, 1) for name, n in counts.most_common()}


def profile_sync(total: int, bots: int) -> dict[str, Any]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with (
        sandbox_process(bots, max(1, total // bots)) as (base_url, api_key),
        tempfile.TemporaryDirectory(prefix="iozen-profile-") as scratch,
    ):
        out = Path(scratch) / "profile.txt"
        command = [
            *(py_spy, "record", "--gil", "--rate", str(RATE), "--format", "raw"),
            *("--output", str(out), "--"),
            *(sys.executable, "-m", "bench.engine_run"),
            *("--base-url", base_url, "--data-dir", str(Path(scratch) / "data")),
        ]
        done = subprocess.run(
            command,
            env=child_env(IOZEN_API_KEY=api_key),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed ({done.returncode}): {done.stderr[-1000:]}")
        samples = out.read_text()
    held = sum(
        int(n) for n in (line.rpartition(" ")[2] for line in samples.splitlines()) if n.isdigit()
    )
    return {"gil_held_s": round(held / RATE, 2), "shares_percent": buckets(samples)}


def run(sizes: Sequence[int] = (100_000,)) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for total in sizes:
        for shape, bots in SHAPES.items():
            key = f"{total}-{shape}"
            results[key] = figures = profile_sync(total, bots)
            print(f"engine profile, {total:,} {shape}: {json.dumps(figures)}", flush=True)
    return results


if __name__ == "__main__":
    run()
