"""The same workspace loaded by dlt, the way dlt's docs recommend for a cursor-paged REST API
with a parent/child layout: the ``rest_api`` source, ``intake_bots`` as the parent resource and
``submissions`` as its child (one paged listing per bot), merged into DuckDB on ``id``.

Two setups (``--setup``), both with the settings of dlt's performance guide (``SPEED_SETTINGS``)
and Parquet load files, so that they differ only in what they read:

- ``incremental``: dlt's documented incremental cursor on ``updated_at`` for submissions. The
  API has no "updated since" parameter, so the cursor cannot be sent: dlt reads every page and
  keeps the rows at or after the last run's highest ``updated_at`` (filtered client-side).
- ``best``: every page read again each run and merged on ``id``; nothing is filtered, so a
  change is picked up whatever its ``updated_at``.

Run as a child process by ``bench.compare`` (API key from ``IOZEN_API_KEY``)::

    python -m bench.dlt_sync --base-url URL --setup best --pipelines-dir DIR --duckdb FILE

It prints one JSON line: the pipeline's time per step (dlt's trace), the HTTP answers it got
(429s included) and, unless ``--no-check``, the submissions in its DuckDB compared with the
sandbox's truth (``rows``, ``missing``, ``stale``, ``extra``, ``exact``). The comparison needs
no dlt, so ``bench.compare`` uses it for iozen-etl's warehouse too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import httpx

SETUPS = ("incremental", "best")
DATASET = "iozen"
TABLE = f"{DATASET}.submissions"
PAGE_SIZE = 100
# The incremental cursor's first value: older than any submission.
EPOCH = "1970-01-01T00:00:00.000Z"
# dlt reads its configuration from the environment (SECTION__KEY). Each setting is one that
# dlt's performance guide names for an extract-bound REST pipeline on a small machine:
SPEED_SETTINGS = {
    # 8 per-bot listings in flight, as iozen-etl and the bare loop use (dlt's default is 5);
    # they run in this pool because the child resource is `parallelized`.
    "EXTRACT__WORKERS": "8",
    # Intermediate files are read once by the next step: compressing them only costs CPU.
    "DATA_WRITER__DISABLE_COMPRESSION": "true",
    # One normaliser process per core; extract files rotate every 20,000 rows so a large load
    # has several files for them to share (one file is normalised by one process).
    "NORMALIZE__WORKERS": "2",
    "EXTRACT__DATA_WRITER__FILE_MAX_ITEMS": "20000",
}
# Tried and left at dlt's default: DATA_WRITER__BUFFER_MAX_ITEMS (20,000 instead of 5,000 made
# no difference beyond the machine's noise, and holds more rows in memory).
OTHER_SETTINGS = {
    # dlt retries a 429 with exponential back-off (1, 2, 4 ... s; it reads no retry time from
    # the body, only a Retry-After header, which ioZen does not send), 5 attempts by default:
    # too few to wait out a 60 s window, and a rate-limited run fails. With waits capped at 5 s
    # a refused request goes again at most 5 s after the window frees a slot (doubling waits
    # overshoot by up to half of the last one), and 20 attempts cover more than a window.
    "RUNTIME__REQUEST_MAX_ATTEMPTS": "20",
    "RUNTIME__REQUEST_MAX_RETRY_DELAY": "5",
    # No usage reports to dlt's servers from a benchmark (and no network here to send them).
    "RUNTIME__DLTHUB_TELEMETRY": "false",
}


def source_config(base_url: str, api_key: str, setup: str, session: Any) -> dict[str, Any]:
    """The ``rest_api`` configuration: bots, then each bot's submissions."""
    paginator = {
        "type": "cursor",
        "cursor_path": "data.pagination.next_cursor",
        "cursor_param": "cursor",
        "has_more_path": "data.pagination.has_more",
    }
    submissions: dict[str, Any] = {
        "path": "intake-bots/{resources.intake_bots.id}/submissions",
        "data_selector": "data.submissions",
        "params": {"limit": PAGE_SIZE},
    }
    if setup == "incremental":
        submissions["incremental"] = {"cursor_path": "updated_at", "initial_value": EPOCH}
    return {
        "client": {
            "base_url": base_url.rstrip("/") + "/",
            "auth": {"type": "bearer", "token": api_key},
            "paginator": paginator,
            "session": session,
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {
                "name": "intake_bots",
                "endpoint": {
                    "path": "intake-bots",
                    "data_selector": "data.intake_bots",
                    "params": {"limit": PAGE_SIZE},
                },
            },
            {
                "name": "submissions",
                "endpoint": submissions,
                # The listing does not name the bot: keep the parent's id as `_intake_bots_id`.
                "include_from_parent": ["id"],
                "parallelized": True,
            },
        ],
    }


def counting_session(answers: Counter[int]) -> Any:
    """dlt's own retrying HTTP session, counting every answer by status at the transport (each
    attempt of a retried request too; a session hook would be replaced by rest_api's own)."""
    from dlt.sources.helpers.requests.retry import Client

    session = Client(raise_for_status=False).session
    adapter = session.get_adapter("http://")
    send = adapter.send
    lock = threading.Lock()

    def counted(request: Any, *args: Any, **kwargs: Any) -> Any:
        response = send(request, *args, **kwargs)
        with lock:
            answers[response.status_code] += 1
        return response

    adapter.send = counted  # type: ignore[method-assign]
    return session


def run_pipeline(
    base_url: str, api_key: str, setup: str, pipelines_dir: Path, db: Path
) -> dict[str, Any]:
    """One ``pipeline.run``, and what dlt's trace says about it."""
    # Before dlt is imported: some settings are read when its modules load.
    os.environ.update(OTHER_SETTINGS)
    os.environ.update(SPEED_SETTINGS)
    import dlt
    from dlt.sources.rest_api import rest_api_source
    from dlt.sources.rest_api.typing import RESTAPIConfig

    answers: Counter[int] = Counter()
    config = source_config(base_url, api_key, setup, counting_session(answers))
    pipeline = dlt.pipeline(
        pipeline_name=f"iozen_{setup}",
        pipelines_dir=str(pipelines_dir),
        destination=dlt.destinations.duckdb(str(db)),
        dataset_name=DATASET,
    )
    started = time.perf_counter()
    pipeline.run(rest_api_source(cast(RESTAPIConfig, config)), loader_file_format="parquet")
    figures: dict[str, Any] = {
        "setup": setup,
        "pipeline_s": round(time.perf_counter() - started, 2),
    }
    trace = pipeline.last_trace
    for step in trace.steps if trace is not None else []:
        if step.finished_at is not None and step.step != "run":
            figures[f"{step.step}_s"] = round(
                (step.finished_at - step.started_at).total_seconds(), 2
            )
    figures["http_answers"] = sum(answers.values())
    figures["http_429"] = answers[429]
    return figures


# The truth comparison ---------------------------------------------------------------------

Rows = dict[str, tuple[str, str]]


def truth(base_url: str) -> Rows:
    """id -> (status, updated_at) of every submission the sandbox holds, read bot by bot (a
    whole large workspace in one answer would be one huge JSON document)."""
    root = base_url.rstrip("/").removesuffix("/api/v1")
    found: Rows = {}
    with httpx.Client(base_url=root, timeout=300) as http:
        for bot in http.get("/_sandbox/truth/bots").json()["data"]:
            params = {"bot_id": bot["id"]}
            subs = http.get("/_sandbox/truth/submissions", params=params).json()["data"]
            found.update((s["id"], (s["status"], s["updated_at"])) for s in subs)
    return found


def stored(db: Path, table: str) -> Rows:
    """id -> (status, updated_at written as the API writes it: UTC, milliseconds, Z)."""
    import duckdb  # here, not at the top: the bare loop's child imports this module's callers

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "select id, status, strftime(timezone('UTC', updated_at::timestamptz), "
            f"'%Y-%m-%dT%H:%M:%S.%g') || 'Z' from {table}"
        ).fetchall()
    finally:
        con.close()
    return {row[0]: (row[1], row[2]) for row in rows}


def diff(held: Rows, expected: Rows) -> dict[str, Any]:
    """Rows missing (in the truth, not stored), stale (stored with another status or
    updated_at) and extra (stored, not in the truth), with the ids of the first two."""
    missing = [key for key in expected if key not in held]
    stale = [key for key, value in expected.items() if key in held and held[key] != value]
    extra = sum(1 for key in held if key not in expected)
    return {
        "rows": len(held),
        "truth_rows": len(expected),
        "missing": len(missing),
        "stale": len(stale),
        "extra": extra,
        "exact": not missing and not stale and not extra,
        "missing_ids": missing,
        "stale_ids": stale,
    }


def counts(found: dict[str, Any]) -> dict[str, Any]:
    """``diff`` without its id lists."""
    return {key: value for key, value in found.items() if not key.endswith("_ids")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--setup", choices=SETUPS, required=True)
    parser.add_argument("--pipelines-dir", type=Path, required=True)
    parser.add_argument("--duckdb", type=Path, required=True)
    parser.add_argument("--no-check", action="store_true", help="skip the truth comparison")
    args = parser.parse_args(argv)
    api_key = os.environ.get("IOZEN_API_KEY")
    if not api_key:
        print("bench.dlt_sync: IOZEN_API_KEY is not set", file=sys.stderr)
        return 2
    summary = run_pipeline(args.base_url, api_key, args.setup, args.pipelines_dir, args.duckdb)
    if not args.no_check:
        summary.update(counts(diff(stored(args.duckdb, TABLE), truth(args.base_url))))
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
