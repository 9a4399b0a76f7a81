from __future__ import annotations

import pytest

from iozen_etl.pipeline.partitions import (
    BACKFILL_TAG,
    FULL,
    INCREMENTAL,
    RECONCILE,
    SYNC_MODE_TAG,
    contiguous_ranges,
    sync_mode,
)

KEYS = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("chosen", "ranges"),
    [
        (["b", "c", "d"], [("b", "d")]),
        (["a", "b", "d"], [("a", "b"), ("d", "d")]),
        (["a", "c", "e"], [("a", "a"), ("c", "c"), ("e", "e")]),
        (["e"], [("e", "e")]),
        (KEYS, [("a", "e")]),
        ([], []),
    ],
)
def test_contiguous_ranges_match_dagsters_single_run_backfill(chosen, ranges):
    assert contiguous_ranges(KEYS, chosen) == ranges


def test_contiguous_ranges_refuses_unknown_bots():
    with pytest.raises(KeyError, match="zzz"):
        contiguous_ranges(KEYS, ["a", "zzz"])


def test_a_backfill_is_always_a_full_refresh():
    assert sync_mode({BACKFILL_TAG: "abc", SYNC_MODE_TAG: INCREMENTAL}) == FULL
    assert sync_mode({}) == INCREMENTAL
    assert sync_mode({SYNC_MODE_TAG: RECONCILE}) == RECONCILE
    with pytest.raises(ValueError, match="unknown"):
        sync_mode({SYNC_MODE_TAG: "sideways"})
