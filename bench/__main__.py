"""``make bench``: every figure the README quotes, from one run on this machine.

Each area's module exposes ``run() -> dict`` and prints its own lines; baselines (a bare httpx
loop over the same pages) are measured inside the same run, so the ratios compare like with like.
``python -m bench sandbox client`` runs a subset; ``--sizes 100000`` limits the full-sync
benchmarks (sync, pipeline, compare) to those workspace sizes (default: 100,000 and 1,000,000);
``--quick`` runs the short form of the areas that have one (compare: under three minutes).
``compare`` needs the bench extra (dlt, matplotlib: ``pip install -e '.[dev,bench]'``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

AREAS = [
    *("sandbox", "client", "sync", "profile", "warehouse", "replay", "pipeline", "changes"),
    *("events", "instance", "workspaces", "compare"),
]


SIZED = {"sync", "pipeline", "compare"}
QUICK = {"compare"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure iozen-etl against baselines taken in the same run; figures go to "
        "bench/results/latest.json.",
    )
    parser.add_argument(
        "areas",
        nargs="*",
        metavar="AREA",
        help=f"areas to run (default: all): {', '.join(AREAS)}",
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(size) for size in text.split(",")],
        default=None,
        help="workspace sizes for the full-sync areas (sync, pipeline, compare), e.g. 100000",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the short form of the areas that have one (compare)"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.areas) - set(AREAS))
    if unknown:
        parser.error(f"unknown area(s): {', '.join(unknown)}; choose from {', '.join(AREAS)}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes: list[int] | None = args.sizes
    quick: bool = args.quick
    chosen = args.areas or AREAS
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
