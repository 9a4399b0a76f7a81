"""The warehouse load's figures: a full load of 1,000,000 submissions, then 1% new rows.

The lake is generated with pyarrow (vectorised, one page file of submissions and one of answers
per bot, 1,000 bots), laid out as the extraction writes it. Each load runs in a fresh Python
process that reports its own wall time and peak RSS (``VmHWM``: ``ru_maxrss`` would include the
bench process it was forked from), so the memory figure is the load's alone. Figures: full load,
incremental load of 1% new submissions (+ answers) in new files (target: under 5% of the full
load), and a load with nothing new.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iozen_etl.sync.schemas import LAKE_TABLES
from iozen_etl.warehouse.lake_files import list_lake

BOTS = 1_000
SUBMISSIONS_PER_BOT = 1_000
INCREMENT_FRACTION = 0.01
INCREMENT_ROUNDS = 3
T0_MS = 1_772_355_600_000  # 2026-03-01 09:00 UTC

# 7 scalar fields and a 2-item multi-select: 9 answer rows per submission.
FIELDS = (
    ("full_name", "short_text", "string"),
    ("email", "email", "string"),
    ("company", "short_text", "string"),
    ("employees", "number", "number"),
    ("start_date", "date", "string"),
    ("newsletter", "boolean", "boolean"),
    ("plan", "select", "string"),
    ("topics", "multi_select", "string"),
    ("topics", "multi_select", "string"),
)
POOL = [f"value {i}" for i in range(997)]

CHILD = """
import json, resource, sys, time
from pathlib import Path
from iozen_etl.settings import DataPaths
from iozen_etl.warehouse import load_warehouse
def peak_kb():
    # This process's own peak: ru_maxrss would also count the bench process it was forked from
    # (Linux keeps the high-water mark across exec), VmHWM is reset by exec.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
usage = resource.getrusage(resource.RUSAGE_SELF)
before, cpu_before = peak_kb(), usage.ru_utime + usage.ru_stime
started = time.perf_counter()
report = load_warehouse(DataPaths(Path(sys.argv[1])))
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "seconds": round(seconds, 3),
    "cpu_seconds": round(usage.ru_utime + usage.ru_stime - cpu_before, 3),
    "phases": dict(report.seconds),
    "files": sum(report.files_loaded.values()),
    "rows": {t: c.inserted + c.updated for t, c in report.tables.items()},
    "row_counts": dict(report.row_counts),
    "peak_rss_mb": round(peak_kb() / 1024, 1),
    "rss_after_imports_mb": round(before / 1024, 1),
}))
"""


def _ts(ms: np.ndarray) -> pa.Array:
    return pa.array(ms, pa.int64()).cast(LAKE_TABLES["submissions"].field("created_at").type)


def _pool_take(indices: np.ndarray) -> pa.Array:
    return pa.array(POOL).take(pa.array(indices % len(POOL)))


def _bot_pages(bot: int, first: int, count: int, synced_ms: int) -> tuple[pa.Table, pa.Table]:
    """A page of ``count`` submissions of one bot, and their answers."""
    bot_id = f"bot{bot:05d}"
    numbers = np.arange(first, first + count)
    ids = pc.binary_join_element_wise(
        f"{bot_id}-s", pc.utf8_lpad(pa.array(numbers).cast(pa.string()), 7, "0"), ""
    )
    created = T0_MS + numbers * 60_000
    subs = _submissions(bot_id, ids, numbers, created, synced_ms)
    return subs, _answers(bot_id, ids, numbers, created)


def _submissions(
    bot_id: str, ids: pa.Array, numbers: np.ndarray, created: np.ndarray, synced_ms: int
) -> pa.Table:
    """Submissions numbered ``numbers`` of one bot, in the lake's schema."""
    status = np.where(numbers % 5 == 0, "IN_PROGRESS", "COMPLETED")
    n = len(numbers)
    # The answers object as JSON, assembled column-wise (json.dumps per row is the slow part).
    as_text = pa.array(numbers).cast(pa.string())
    data = pc.binary_join_element_wise(
        '{"full_name": "',
        _pool_take(numbers),
        '", "email": "p',
        as_text,
        '@example.test", "company": "',
        _pool_take(numbers * 7),
        '", "employees": ',
        pa.array(numbers % 500).cast(pa.string()),
        ', "start_date": "2026-03-01", "newsletter": ',
        pa.array(np.where(numbers % 2 == 1, "true", "false")),
        ', "plan": "b", "topics": ["a", "c"]}',
        "",
    )
    return pa.table(
        {
            "id": ids,
            "intake_bot_id": pa.array([bot_id] * n),
            "status": pa.array(status),
            "is_test": pa.array(numbers % 50 == 0),
            "ai_summary": pa.nulls(n, pa.string()),
            "file_count": pa.array(np.zeros(n, dtype=np.int64)),
            "message_count": pa.array(np.full(n, 7, dtype=np.int64)),
            "schema_version": pa.array(np.ones(n, dtype=np.int64)),
            "created_at": _ts(created),
            "updated_at": _ts(created + 30_000),
            "data": data,
            "extra": pa.array(["{}"] * n),
            "synced_at": _ts(np.full(n, synced_ms)),
        },
        schema=LAKE_TABLES["submissions"],
    )


def _answers(bot_id: str, ids: pa.Array, numbers: np.ndarray, created: np.ndarray) -> pa.Table:
    """The long-form answers of the submissions ``_submissions`` made: one row per FIELDS item."""
    n = len(numbers)
    per = len(FIELDS)
    rows = n * per
    sub_index = np.repeat(np.arange(n), per)
    field_index = np.tile(np.arange(per), n)
    kinds = np.array([kind for _, _, kind in FIELDS])[field_index]
    answer_numbers = numbers[sub_index]
    text = _pool_take(answer_numbers * 31 + field_index)
    return pa.table(
        {
            "submission_id": ids.take(pa.array(sub_index)),
            "intake_bot_id": pa.array([bot_id] * rows),
            "field_name": pa.array(np.array([name for name, _, _ in FIELDS])[field_index]),
            "position": pa.array(np.tile([0] * (per - 1) + [1], n).astype(np.int32)),
            "is_list": pa.array(field_index >= per - 2),
            "value_kind": pa.array(kinds),
            "text_value": pc.if_else(pa.array(kinds == "string"), text, None),
            "number_value": pa.array(
                np.where(kinds == "number", answer_numbers % 500, np.nan),
                from_pandas=True,
            ),
            "boolean_value": pc.if_else(
                pa.array(kinds == "boolean"), pa.array(answer_numbers % 2 == 1), None
            ),
            "submission_updated_at": _ts(created[sub_index] + 30_000),
        },
        schema=LAKE_TABLES["submission_answers"],
    )


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def generate(root: Path, per_bot: int, first: int, stem: str, bots: range) -> int:
    lake = root / "parquet"
    synced = T0_MS + 10**9 + first
    for bot in bots:
        subs, answers = _bot_pages(bot, first, per_bot, synced)
        folder = f"bot_id=bot{bot:05d}"
        _write(lake / "submissions" / folder / f"{stem}.parquet", subs)
        _write(lake / "submission_answers" / folder / f"{stem}.parquet", answers)
    return len(bots) * per_bot


def generate_bots(root: Path) -> None:
    lake = root / "parquet"
    bot_ids = [f"bot{b:05d}" for b in range(BOTS)]
    _write(
        lake / "intake_bots" / "all.parquet",
        pa.Table.from_pylist(
            [
                {
                    "id": bot_id,
                    "name": f"Intake {b}",
                    "status": "ACTIVE",
                    "submission_count": SUBMISSIONS_PER_BOT,
                    "created_at": T0_MS,
                    "updated_at": T0_MS,
                    "schema_shape": "fields",
                    "extra": "{}",
                    "synced_at": T0_MS,
                }
                for b, bot_id in enumerate(bot_ids)
            ],
            schema=LAKE_TABLES["intake_bots"],
        ),
    )
    distinct = [f for i, f in enumerate(FIELDS) if i < len(FIELDS) - 1]
    for bot_id in bot_ids:
        _write(
            lake / "intake_bot_fields" / f"bot_id={bot_id}" / "detail.parquet",
            pa.Table.from_pylist(
                [
                    {
                        "intake_bot_id": bot_id,
                        "position": position,
                        "kind": "field",
                        "is_content": False,
                        "name": name,
                        "label": name,
                        "type": field_type,
                        "options": [],
                        "bot_updated_at": T0_MS,
                    }
                    for position, (name, field_type, _) in enumerate(distinct)
                ],
                schema=LAKE_TABLES["intake_bot_fields"],
            ),
        )


def _load_in_child(root: Path) -> dict[str, Any]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - started, 3)
    return result


def _incremental_loads(root: Path) -> tuple[list[dict[str, Any]], int]:
    """Each round's load figures, and the submissions one round adds.

    1% new rows: new page files for a tenth of the bots, 100 submissions each; three rounds, as
    this machine's other work makes single timings noisy: the median counts."""
    increment_bots = range(0, BOTS, 10)
    per_bot = int(BOTS * SUBMISSIONS_PER_BOT * INCREMENT_FRACTION) // len(increment_bots)
    rounds = []
    added = 0
    for round_number in range(1, INCREMENT_ROUNDS + 1):
        first = SUBMISSIONS_PER_BOT + (round_number - 1) * per_bot
        added = generate(root, per_bot, first, f"page-{round_number:04d}", increment_bots)
        rounds.append(_load_in_child(root))
        print(
            f"incremental load {round_number} of {added:,} new submissions:"
            f" {rounds[-1]['seconds']:.2f} s (cpu {rounds[-1]['cpu_seconds']:.2f} s),"
            f" peak RSS {rounds[-1]['peak_rss_mb']:.0f} MB, phases {rounds[-1]['phases']}"
        )
    return rounds, added


def run() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="iozen-bench-warehouse-"))
    try:
        started = time.perf_counter()
        generate_bots(root)
        total = generate(root, SUBMISSIONS_PER_BOT, 0, "page-0000", range(BOTS))
        generated_s = time.perf_counter() - started
        lake_mb = sum(f.size_bytes for f in list_lake(root / "parquet")) / 2**20
        print(f"lake: {total:,} submissions in {generated_s:.1f} s, {lake_mb:.0f} MB of Parquet")

        full = _load_in_child(root)
        print(
            f"full load: {full['seconds']:.2f} s (cpu {full['cpu_seconds']:.2f} s),"
            f" peak RSS {full['peak_rss_mb']:.0f} MB, phases {full['phases']}"
        )
        rounds, added = _incremental_loads(root)
        incremental = sorted(rounds, key=lambda r: r["seconds"])[len(rounds) // 2]
        ratio = incremental["seconds"] / full["seconds"]
        cpu_ratio = statistics.median(r["cpu_seconds"] for r in rounds) / full["cpu_seconds"]
        print(
            f"incremental (median): {incremental['seconds']:.2f} s = {ratio:.1%} of the full"
            f" load's wall time, {cpu_ratio:.1%} of its cpu time (target < 5%)"
        )
        nothing = _load_in_child(root)
        print(f"load with nothing new: {nothing['seconds']:.2f} s, phases {nothing['phases']}")
        warehouse_mb = (root / "iozen.duckdb").stat().st_size / 2**20
        print(f"published warehouse file: {warehouse_mb:.0f} MB")
        return {
            "submissions": total,
            "answers": full["row_counts"]["submission_answers"],
            "lake_mb": round(lake_mb, 1),
            "generate_seconds": round(generated_s, 2),
            "full_load": full,
            "incremental_new_submissions": added,
            "incremental_load": incremental,
            "incremental_rounds": rounds,
            "incremental_ratio": round(ratio, 4),
            "incremental_cpu_ratio": round(cpu_ratio, 4),
            "incremental_target_ratio": 0.05,
            "noop_load": nothing,
            "warehouse_mb": round(warehouse_mb, 1),
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
