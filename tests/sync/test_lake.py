from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from iozen_etl.sync import normalise
from iozen_etl.sync.lake import Lake, safe_segment
from iozen_etl.sync.schemas import LAKE_TABLES
from tests.support.lake import lake_files
from tests.support.wire import submission_record

HOSTILE_IDS = [
    "../../etc",
    "..",
    ".",
    "a/b",
    "a\\b",
    "nul\x00byte",
    "x" * 300,
    "ünïcødé",
    "/abs",
    "bot_id=evil",
    "~deadbeef",
    "",
]


@pytest.mark.parametrize("bot_id", HOSTILE_IDS)
def test_hostile_bot_ids_stay_inside_the_lake(tmp_path, bot_id):
    lake = Lake(tmp_path / "parquet")
    table = normalise.submissions_table(
        [submission_record("s1", {}, intake_bot_id=bot_id or "?")], "2026-01-01T00:00:00Z"
    )
    path = lake.write("submissions", bot_id, "00000-start", table)
    assert path.resolve().is_relative_to((tmp_path / "parquet" / "submissions").resolve())
    assert path.parent.parent == tmp_path / "parquet" / "submissions"
    assert len(path.parent.name) < 60
    assert pq.read_table(path)["intake_bot_id"].to_pylist() == [bot_id or "?"]


def test_safe_ids_are_kept_and_encodings_never_collide():
    assert safe_segment("cm7abc12x0001yz9k8mno3pqr") == "cm7abc12x0001yz9k8mno3pqr"
    encoded = {safe_segment(value) for value in HOSTILE_IDS}
    assert len(encoded) == len(HOSTILE_IDS)
    assert all(value.startswith("~") for value in encoded)


def test_rewriting_a_page_replaces_the_file_and_leaves_no_temporary(tmp_path):
    lake = Lake(tmp_path)
    first = normalise.submissions_table([submission_record("s1", {})], "2026-01-01T00:00:00Z")
    second = normalise.submissions_table(
        [submission_record("s1", {}), submission_record("s2", {})], "2026-01-01T00:00:00Z"
    )
    lake.write("submissions", "bot1", "00000-start", first)
    path = lake.write("submissions", "bot1", "00000-start", second)
    assert lake_files(tmp_path, "submissions") == [path]
    assert pq.read_table(path).num_rows == 2
    assert os.listdir(path.parent) == [path.name]


def test_refuses_unknown_tables_and_wrong_schemas(tmp_path):
    lake = Lake(tmp_path)
    table = normalise.submissions_table([submission_record("s1", {})], "2026-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="unknown lake table"):
        lake.write("../x", None, "a", table)
    with pytest.raises(ValueError, match="lake schema"):
        lake.write("submission_answers", "bot1", "a", table)
    assert not any(tmp_path.rglob("*"))


def test_every_lake_table_reads_back_with_its_schema(tmp_path):
    lake = Lake(tmp_path)
    for table, schema in LAKE_TABLES.items():
        path = lake.write(
            table, "bot1" if table != "intake_bots" else None, "s", schema.empty_table()
        )
        assert pq.read_table(path).schema.equals(schema), table


def test_write_many_checks_every_file_before_writing_any(tmp_path):
    lake = Lake(tmp_path)
    good = normalise.submissions_table([submission_record("s1", {})], "2026-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="lake schema"):
        lake.write_many(
            [("submissions", "bot1", "a", good), ("submission_answers", "bot1", "a", good)]
        )
    assert not any(tmp_path.rglob("*"))
    answers = normalise.answers_table([submission_record("s1", {"name": "Ann"})])
    paths = lake.write_many(
        [("submission_answers", "bot1", "a", answers), ("submissions", "bot1", "a", good)]
    )
    assert [pq.read_table(path).num_rows for path in paths] == [1, 1]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.parquet"] * 2


def test_the_package_puts_arrow_on_the_system_allocator_unless_told_otherwise() -> None:
    probe = "import iozen_etl, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    chosen = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert chosen.stdout.strip() == "system"
    kept = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert kept.stdout.strip() == "mimalloc"  # a choice already in the environment wins
