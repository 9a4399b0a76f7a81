"""Near-real-time figures: from a submission made in ioZen (the sandbox) to its row in the
published warehouse, through the webhook receiver and the events run; and how many deliveries
a second the receiver accepts.

The sandbox and the receiver (`iozen-etl webhooks serve`) each run in a process of their own on
loopback. The Dagster daemon is stood in for by a loop in this process that asks the events
sensor's question (``events_run_request``) every ``POLL_S`` and runs ``events_job`` in-process
when it says so; under the daemon, add its sensor interval (``EVENTS_SENSOR_INTERVAL_S``) at
worst. Submissions are made one every ``GAP_S``, so events arrive while a run is going, as they
would, and some runs take several.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

from bench.support import child_env, free_port, sandbox_process
from iozen_etl.api import IozenClient
from iozen_etl.settings import DataPaths

EVENTS = 100
GAP_S = 0.2
POLL_S = 0.5
TIMEOUT_S = 300.0
THROUGHPUT_EVENTS = 2_000


def run() -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="iozen-bench-events-") as tmp,
        sandbox_process(
            "--bots", "5", "--submissions-per-bot", "50", "--seed", "7", "--rate-limit", "100000"
        ) as (base_url, api_key),
    ):
        paths = DataPaths(Path(tmp) / "data")
        os.environ.update(
            {
                "IOZEN_API_KEY": api_key,
                "IOZEN_BASE_URL": base_url,
                "IOZEN_DATA_DIR": str(paths.root),
            }
        )
        latency = _latency(base_url, api_key, paths)
        throughput = _throughput(Path(tmp) / "throughput")
    results = {**latency, **throughput}
    print(
        f"sandbox submission to published warehouse, {EVENTS} events one every {GAP_S} s: "
        f"median {results['latency_median_s']:.2f} s, p95 {results['latency_p95_s']:.2f} s, "
        f"{results['events_runs']} runs (sensor polled every {POLL_S} s)"
    )
    print(
        f"receiver: {results['receiver_events_per_s']:,.0f} signed deliveries/s accepted and kept "
        f"({THROUGHPUT_EVENTS:,} over one kept-alive connection)"
    )
    return results


def _latency(base_url: str, api_key: str, paths: DataPaths) -> dict[str, Any]:
    from iozen_etl.definitions import defs
    from iozen_etl.pipeline.automation import events_run_request
    from iozen_etl.pipeline.launch import run_sync
    from iozen_etl.warehouse import run_query

    instance = dg.DagsterInstance.ephemeral()
    assert run_sync(defs, instance, say=lambda line: None).success
    port = free_port()
    with IozenClient(api_key, base_url) as client:
        hook = client.create_webhook(f"http://127.0.0.1:{port}/", ["submission.completed"])
        bot_id = client.list_intake_bots_page().items[0].id
    assert hook.secret
    made: dict[str, float] = {}
    seen: dict[str, float] = {}
    runs = 0
    with _receiver(port, hook.secret, paths.root):
        maker = threading.Thread(target=_make, args=(base_url, api_key, bot_id, made), daemon=True)
        maker.start()
        job = defs.resolve_job_def("events_job")
        deadline = time.monotonic() + TIMEOUT_S
        while len(seen) < EVENTS and time.monotonic() < deadline:
            if not maker.is_alive() and len(made) < EVENTS:
                raise RuntimeError("making the sandbox's submissions failed")
            request = events_run_request(instance, paths, now=time.time())
            if isinstance(request, dg.RunRequest):
                quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
                run = job.execute_in_process(instance=instance, tags=request.tags, run_config=quiet)
                assert run.success
                runs += 1
                done = time.time()
                ids = [i for i in list(made) if i not in seen]
                if ids:
                    quoted = ", ".join(f"'{i}'" for i in ids)
                    rows = run_query(
                        paths, f"select id from submissions where id in ({quoted})"
                    ).rows
                    seen.update({str(row[0]): done for row in rows})
            else:
                time.sleep(POLL_S)
        maker.join()
    assert len(seen) == EVENTS, f"{len(seen)} of {EVENTS} events reached the warehouse"
    waits = sorted(seen[i] - made[i] for i in seen)
    return {
        "latency_median_s": round(statistics.median(waits), 3),
        "latency_p95_s": round(waits[int(0.95 * (len(waits) - 1))], 3),
        "latency_max_s": round(waits[-1], 3),
        "events_runs": runs,
    }


def _make(base_url: str, api_key: str, bot_id: str, made: dict[str, float]) -> None:
    origin = base_url.split("/api/")[0]
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=origin, headers=headers) as http:
        for _ in range(EVENTS):
            started = time.time()
            body = {"bot_id": bot_id, "n": 1, "status": "COMPLETED"}
            (new_id,) = http.post("/_sandbox/generate", json=body).json()["data"]["ids"]
            made[str(new_id)] = started
            time.sleep(GAP_S)


def _throughput(folder: Path) -> dict[str, Any]:
    secret = "whsec_bench_" + "t" * 32
    port = free_port()
    with _receiver(port, secret, folder / "data"), httpx.Client() as http:
        started = time.perf_counter()
        for number in range(THROUGHPUT_EVENTS):
            body = json.dumps(
                {"id": f"evt_{number}", "type": "submission.completed", "data": {}}
            ).encode()
            at = str(int(time.time()))
            mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {"X-IoZen-Timestamp": at, "X-IoZen-Signature": "sha256=" + mac}
            answer = http.post(f"http://127.0.0.1:{port}/", content=body, headers=headers)
            assert answer.status_code == 200, answer.text
        elapsed = time.perf_counter() - started
    return {"receiver_events_per_s": round(THROUGHPUT_EVENTS / elapsed, 1)}


@contextmanager
def _receiver(port: int, secret: str, data_dir: Path) -> Iterator[None]:
    child = subprocess.Popen(
        [sys.executable, "-m", "iozen_etl", "webhooks", "serve", "--port", str(port)],
        env=child_env(IOZEN_WEBHOOK_SECRET=secret, IOZEN_DATA_DIR=str(data_dir)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.05)
        yield
    finally:
        child.terminate()
        child.wait(timeout=30)
