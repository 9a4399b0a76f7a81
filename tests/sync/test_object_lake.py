"""The lake in an object store (``IOZEN_LAKE_URI=s3://...``), against moto's S3 server on
loopback: a sync and its load match the sandbox's truth, and so does an incremental one; a sync
killed mid-upload leaves no object that is not a complete Parquet file; the warehouse rebuilds
from the bucket alone; a page rewritten within the second a load listed it is loaded again; a
URI carrying credentials is refused without being repeated."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from iozen_etl.sandbox import RunningServer, Sandbox, SandboxConfig, serve
from iozen_etl.settings import DataPaths
from iozen_etl.sync.bots import sync_bots
from iozen_etl.sync.lake import Lake, ObjectLake
from iozen_etl.sync.lake_location import LakeLocationError
from iozen_etl.sync.schemas import LAKE_TABLES
from iozen_etl.sync.state import StateStore
from iozen_etl.warehouse import files_owed, load_warehouse
from tests.support.children import iozen_etl, kill_leftovers, start
from tests.support.crashes import kill_when, nudge_world
from tests.support.lake import answer_rows, submission_row
from tests.support.s3 import FAKE_CREDENTIALS, S3Server, object_sync_child, s3_lake, serve_s3
from tests.support.sandbox import sandbox_clock_client
from tests.support.truth import assert_warehouse_equals_truth
from tests.support.variants import move_world, run_pipeline
from tests.support.warehouse import fetch

pytestmark = pytest.mark.slow

SEED = 20261207
KILLS = 4
CHILD_TIMEOUT_S = 60.0
_buckets = itertools.count()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with serve_s3(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        yield server


@pytest.fixture
def lake_uri(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    return s3_lake(s3, f"lake-{next(_buckets)}", monkeypatch)


@pytest.fixture
def paths(tmp_path: Path, lake_uri: str) -> DataPaths:
    return DataPaths(tmp_path / "data", lake_uri=lake_uri)


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    kill_leftovers()


def _objects(s3: S3Server, paths: DataPaths) -> list[pafs.FileInfo]:
    """Every object of the lake, as a reader listing the bucket sees it."""
    lake = Lake.open(paths.lake)
    assert isinstance(lake, ObjectLake)
    selector = pafs.FileSelector(str(lake.root), recursive=True, allow_not_found=True)
    return [i for i in s3.filesystem().get_file_info(selector) if i.type == pafs.FileType.File]


def _world(bots: int = 4) -> Sandbox:
    return Sandbox(SandboxConfig(seed=SEED, bots=bots, submissions_per_bot=60))


def test_a_sync_into_s3_and_its_load_equal_the_truth(s3: S3Server, paths: DataPaths) -> None:
    sandbox = _world()
    client = sandbox_clock_client(sandbox, seed=SEED)
    report = run_pipeline(client, paths)
    assert_warehouse_equals_truth(paths, sandbox)
    # Nothing of the lake on the local disk: only the state file and the warehouse.
    assert not paths.parquet.exists()
    assert not (paths.writer_db.parent / "lake-cache" / "main").exists()
    objects = _objects(s3, paths)
    assert len(objects) == sum(report.load.files_loaded.values())
    # Owed: exactly the files this load recorded as unsettled (listed within SETTLE_NS of
    # their upload), which the next load takes again.
    unsettled = fetch(paths, "select count(*) from load_ledger where inode = 1")[0][0]
    assert files_owed(paths) == unsettled


def test_an_incremental_sync_after_changes_stays_exact(paths: DataPaths) -> None:
    sandbox = _world()
    client = sandbox_clock_client(sandbox, seed=SEED)
    run_pipeline(client, paths)
    moved = move_world(sandbox)
    report = run_pipeline(client, paths)
    assert report.load.rejected == ()
    assert_warehouse_equals_truth(paths, sandbox)
    rows = fetch(paths, "select status from submissions where id = ?", [moved["completed"]])
    assert rows == [("COMPLETED",)]


def test_a_workspace_writes_under_its_own_prefix_of_the_bucket(
    s3: S3Server, paths: DataPaths
) -> None:
    acme = paths.for_workspace("acme")
    # The workspace's name goes into the URI's path, before its query.
    assert acme.lake == paths.lake.replace("/lake?", "/lake/acme?")
    sandbox = _world(bots=2)
    with StateStore(acme.state_db) as state:
        sync_bots(sandbox_clock_client(sandbox, seed=SEED), Lake.open(acme.lake), state)
    written = [info.path for info in _objects(s3, paths)]
    assert written
    assert all("/lake/acme/intake_bot" in path for path in written), written


@pytest.fixture
def sync_server() -> Iterator[RunningServer]:
    # Latency keeps each request in the air a little, so the sync spends longer between
    # uploads, and the world is large enough for several uploads per run.
    server = serve(Sandbox(SandboxConfig(seed=SEED, rate_limit=10**9, bots=6, latency_ms=1)))
    try:
        yield server
    finally:
        server.close()


def test_a_sync_killed_mid_upload_leaves_no_partial_object(
    s3: S3Server, sync_server: RunningServer, paths: DataPaths, tmp_path: Path
) -> None:
    sandbox = sync_server.sandbox
    bucket = paths.lake.removeprefix("s3://").split("/", 1)[0]
    credentials = [f"{name}={value}" for name, value in FAKE_CREDENTIALS.items()]
    args = (str(paths.root), paths.lake, sync_server.base_url, sandbox.api_key, *credentials)
    rng = random.Random(SEED)
    cut_short: set[str] = set()
    for attempt in range(KILLS):
        nudge_world(sandbox, rng)
        before = s3.uploads_in_progress(bucket)
        child = start(object_sync_child, tmp_path / f"sync-{attempt}.out", *args)
        if not kill_when(child, s3.upload_starts(bucket), CHILD_TIMEOUT_S):
            assert child.process.exitcode == 0, child.said()  # it finished first
        cut_short |= s3.uploads_in_progress(bucket) - before
        filesystem = s3.filesystem()
        for info in _objects(s3, paths):
            # Listed means whole: the footer reads, and so does every row.
            table = pq.read_table(info.path, filesystem=filesystem)
            assert table.num_rows == pq.read_metadata(info.path, filesystem=filesystem).num_rows
    # Kills did land inside uploads, and left no object behind them.
    assert cut_short, "no kill landed inside an upload"
    last = start(object_sync_child, tmp_path / "sync-last.out", *args)
    assert last.wait(CHILD_TIMEOUT_S) == 0, last.said()
    assert_warehouse_equals_truth(paths, sandbox)


def test_rebuild_from_the_bucket_alone_equals_the_truth(paths: DataPaths, tmp_path: Path) -> None:
    sandbox = _world(bots=3)
    run_pipeline(sandbox_clock_client(sandbox, seed=SEED), paths)
    elsewhere = DataPaths(tmp_path / "elsewhere", lake_uri=paths.lake)
    env = {"IOZEN_DATA_DIR": str(elsewhere.root), "IOZEN_LAKE_URI": paths.lake}
    command = iozen_etl("rebuild", [], env, tmp_path / "rebuild.out")
    assert command.wait(CHILD_TIMEOUT_S) == 0, command.said()
    assert f"Parquet files of {paths.lake}" in command.said()
    assert_warehouse_equals_truth(elsewhere, sandbox)
    assert not (elsewhere.writer_db.parent / "lake-cache" / "main").exists()


def _page(updated: float, answer: str) -> list[tuple[str, str, str, pa.Table]]:
    """One page's two files, as the engine writes them together."""
    rows = [submission_row("s1", "b1", updated, {"a": answer})]
    return [
        ("submission_answers", "b1", "p0", answer_table(rows)),
        ("submissions", "b1", "p0", pa.Table.from_pylist(rows, schema=LAKE_TABLES["submissions"])),
    ]


def answer_table(rows: list[dict[str, object]]) -> pa.Table:
    return pa.Table.from_pylist(answer_rows(rows), schema=LAKE_TABLES["submission_answers"])


def test_a_page_rewritten_within_the_second_it_was_loaded_is_loaded_again(
    s3: S3Server, paths: DataPaths
) -> None:
    """S3 keeps modification times to the second: the rewrite below has the size and the
    mtime of the files the first load listed, so only their unsettled mark gets them loaded."""
    lake = Lake.open(paths.lake)
    for _ in range(5):  # until both writes and the load between them share one second
        lake.write_many(_page(1, "x"))
        first = {i.path: (i.size, i.mtime_ns) for i in _objects(s3, paths)}
        load_warehouse(paths)
        lake.write_many(_page(2, "y"))  # a later version of the same size
        second = {i.path: (i.size, i.mtime_ns) for i in _objects(s3, paths)}
        if second == first:
            break
        time.sleep(0.2)
    assert second == first, "every rewrite crossed a second"
    load_warehouse(paths)
    assert fetch(paths, "select data from submissions") == [('{"a": "y"}',)]
    assert fetch(paths, "select text_value from submission_answers") == [("y",)]


SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://AKIAIOSFODNN7EXAMPLE:{SECRET}@bucket/lake?region=us-east-1",
        f"s3://{SECRET}@bucket/lake",
        f"s3://bucket/lake?region=us-east-1&secret_key={SECRET}",
    ],
)
def test_a_uri_with_credentials_is_refused_without_repeating_them(uri: str, tmp_path: Path) -> None:
    with pytest.raises(LakeLocationError, match="carries credentials") as refused:
        Lake.open(uri)
    assert SECRET not in str(refused.value)
    with pytest.raises(LakeLocationError) as refused:
        load_warehouse(DataPaths(tmp_path / "data", lake_uri=uri))
    assert SECRET not in str(refused.value)
    env = {"IOZEN_DATA_DIR": str(tmp_path / "data"), "IOZEN_LAKE_URI": uri}
    command = iozen_etl("rebuild", [], env, tmp_path / "rebuild.out")
    assert command.wait(CHILD_TIMEOUT_S) == 1
    said = command.said()
    assert "carries credentials" in said and "AWS_SECRET_ACCESS_KEY" in said
    assert SECRET not in said and "AKIAIOSFODNN7EXAMPLE" not in said
    assert "Traceback" not in said


def test_a_local_lake_stays_a_local_folder(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data")
    assert type(Lake.open(paths.lake)) is Lake
    assert Lake.open(paths.lake).root == paths.parquet
    assert Lake.open(f"file://{paths.parquet}").root == paths.parquet
