"""``make bench``: every figure the README quotes, from one run on this machine.

Each area's module exposes ``run() -> dict`` and prints its own lines; baselines (a bare httpx
loop over the same pages) are measured inside the same run, so the ratios compare like with like.
``python -m bench sandbox client`` runs a subset; ``--sizes 100000`` limits the full-sync
benchmarks (sync, pipeline, compare) to those workspace sizes (default: 100,000 and 1,000,000);
``--quick`` runs the short form of the areas that have one (compare: under three minutes).
``compare`` needs the bench extra (dlt, matplotlib: ``pip install -e '.[dev,bench]'``).
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path

AREAS = [
    *("sandbox", "client", "sync", "profile", "warehouse", "replay", "pipeline", "changes"),
    "compare",
]


SIZED = {"sync", "pipeline", "compare"}
QUICK = {"compare"}


def main(argv: list[str]) -> int:
    sizes: list[int] | None = None
    quick = "--quick" in argv
    argv = [arg for arg in argv if arg != "--quick"]
    if "--sizes" in argv:
        at = argv.index("--sizes")
        sizes = [int(size) for size in argv[at + 1].split(",")]
        argv = argv[:at] + argv[at + 2 :]
    chosen = argv or AREAS
    unknown = sorted(set(chosen) - set(AREAS))
    if unknown:
        print(f"unknown bench area(s): {', '.join(unknown)}; choose from {', '.join(AREAS)}")
        return 2
    results: dict[str, object] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(__file__).parent / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    for area in chosen:
        print(f"\n=== {area} ===", flush=True)
        module = importlib.import_module(f"bench.{area}")
        started = time.perf_counter()
        options: dict[str, object] = {}
        if sizes and area in SIZED:
            options["sizes"] = sizes
        if quick and area in QUICK:
            options["quick"] = True
        results[area] = module.run(**options)
        print(f"({area}: {time.perf_counter() - started:.1f} s)", flush=True)
        # After every area: a later area's failure does not lose the figures already measured.
        out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
