"""``iozen-etl sandbox``: serve a seeded sandbox on loopback until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from types import FrameType

from iozen_etl.sandbox import Sandbox, serve
from iozen_etl.sandbox.config import (
    ALL_SCOPES,
    ROUTE_NAMES,
    FaultSpec,
    FaultSpecError,
    SandboxConfig,
)

EPILOG = f"""\
fault SPEC: comma-separated KIND=VALUE items, each optionally ending in @ROUTE[|ROUTE]:
  5xx=P  429=P[:BURST]  drop=P  truncate=P  html=P  latency=50ms
  e.g. --faults '5xx=0.1,429=0.05:3,drop=0.02,latency=50ms@submissions'
routes: {", ".join(ROUTE_NAMES)}
scopes: {", ".join(ALL_SCOPES)}

On start it prints two lines, IOZEN_BASE_URL=... and IOZEN_API_KEY=... (a key with every
scope), then serves until SIGINT or SIGTERM. Sandbox-only routes live under /_sandbox/
(generate, update, pause, add-field, add-bot, advance, deliver, truth/..., requests).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    _add_world_options(parser)
    _add_access_options(parser)
    _add_variant_options(parser)
    parser.add_argument(
        "--frozen-clock",
        action="store_true",
        help="the clock stands still until POST /_sandbox/advance (default: wall time)",
    )


def _add_world_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and faults")
    parser.add_argument("--bots", type=int, default=20, help="number of intake bots (default 20)")
    parser.add_argument(
        "--submissions-per-bot",
        type=int,
        default=50,
        help="mean submissions per bot; the spread is skewed (default 50)",
    )
    parser.add_argument(
        "--in-progress-share",
        type=float,
        default=0.15,
        help="share of seeded and generated submissions left IN_PROGRESS (default 0.15)",
    )


def _add_access_options(parser: argparse.ArgumentParser) -> None:
    """Plan, limits, keys and faults: what stands between a client and the data."""
    parser.add_argument("--plan", choices=("pro", "business"), default="business")
    parser.add_argument(
        "--rate-limit", type=int, default=None, help="requests per window per key (plan default)"
    )
    parser.add_argument("--window-s", type=float, default=60.0, help="rate-limit window seconds")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument("--faults", default=None, metavar="SPEC", help="fault injection (below)")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY=SCOPE,SCOPE",
        help="add a key with just these scopes (repeatable)",
    )
    parser.add_argument("--submission-quota", type=int, default=None, help="plan quota (429)")


def _add_variant_options(parser: argparse.ArgumentParser) -> None:
    """The answers to the API's open questions (docs/decisions.md), default off."""
    parser.add_argument("--create-201", action="store_true", help="POSTs answer 201, not 200")
    parser.add_argument("--delete-204", action="store_true", help="DELETE answers 204, no body")
    parser.add_argument(
        "--legacy-schema", action="store_true", help="bot schema as a bare list (older shape)"
    )
    parser.add_argument(
        "--unwrapped-bot", action="store_true", help="bot detail as data, not data.intake_bot"
    )
    parser.add_argument(
        "--no-retry-after-body", action="store_true", help="429 without details.retry_after"
    )
    parser.add_argument("--retry-after-header", action="store_true", help="429 with Retry-After")
    parser.add_argument("--retry-after-zero", action="store_true", help="429 says to wait 0 s")
    parser.add_argument(
        "--opaque-cursors", action="store_true", help="next_cursor is a token, not an item id"
    )
    parser.add_argument(
        "--cursor-ttl",
        type=float,
        default=None,
        metavar="SECONDS",
        help="opaque cursors older than this are refused with 400 (needs --opaque-cursors)",
    )
    parser.add_argument(
        "--newest-first", action="store_true", help="lists newest first (not ascending)"
    )
    parser.add_argument(
        "--no-milliseconds", action="store_true", help="timestamps like 2026-02-22T11:00:00Z"
    )
    parser.add_argument(
        "--unknown-extras",
        action="store_true",
        help="unknown keys in answers and a schema item of an unknown kind",
    )


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """A SandboxConfig from the parsed options; raises ValueError on a bad one."""
    extra_keys = _extra_keys(args.key)
    faults = FaultSpec.parse(args.faults) if args.faults else None
    config = SandboxConfig(
        seed=args.seed,
        bots=args.bots,
        submissions_per_bot=args.submissions_per_bot,
        in_progress_share=args.in_progress_share,
        plan=args.plan,
        rate_limit=args.rate_limit,
        window_s=args.window_s,
        latency_ms=args.latency_ms,
        faults=faults,
        submission_quota=args.submission_quota,
        create_status=201 if args.create_201 else 200,
        delete_status=204 if args.delete_204 else 200,
        schema_shape="legacy" if args.legacy_schema else "fields",
        bot_detail_wrapped=not args.unwrapped_bot,
        retry_after_in_body=not args.no_retry_after_body,
        retry_after_header=args.retry_after_header,
        retry_after_zero=args.retry_after_zero,
        cursor_mode="opaque" if args.opaque_cursors else "id",
        cursor_ttl_s=args.cursor_ttl,
        list_order="desc" if args.newest_first else "asc",
        timestamp_precision="s" if args.no_milliseconds else "ms",
        unknown_extras=args.unknown_extras,
        real_time=not args.frozen_clock,
        extra_keys=extra_keys,
    )
    config.validate()
    return config


def _extra_keys(specs: list[str]) -> dict[str, tuple[str, ...]]:
    """The ``--key KEY=SCOPE,SCOPE`` options as key -> scopes; raises ValueError on a bad one."""
    extra_keys: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        key, eq, scopes = spec.partition("=")
        if not eq or not key.startswith("iozen_live_"):
            raise ValueError(f"--key wants iozen_live_...=SCOPE,SCOPE, got {spec.split('=')[0]!r}")
        names = tuple(s.strip() for s in scopes.split(",") if s.strip())
        unknown = sorted(set(names) - set(ALL_SCOPES))
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown}; scopes: {', '.join(ALL_SCOPES)}")
        extra_keys[key] = names
    return extra_keys


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except (ValueError, FaultSpecError) as error:
        print(f"iozen-etl sandbox: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before seeding (a million submissions take seconds) so an early stop is clean.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.perf_counter()
    sandbox = Sandbox(config)
    if stop.is_set():
        return 0
    try:
        server = serve(sandbox, args.host, args.port)
    except OSError as error:
        print(
            f"iozen-etl sandbox: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr
        )
        return 1
    print(f"IOZEN_BASE_URL={server.base_url}", flush=True)
    print(f"IOZEN_API_KEY={sandbox.api_key}", flush=True)
    print(
        f"sandbox: {config.bots} bots, {sandbox.submission_total()} submissions, "
        f"seeded in {time.perf_counter() - started:.1f} s; Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.close()
    return 0
