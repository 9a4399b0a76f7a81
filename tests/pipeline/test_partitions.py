from __future__ import annotations

import pytest

from iozen_etl.pipeline.partitions import (
    BACKFILL_TAG,
    FULL,
    INCREMENTAL,
    RECONCILE,
    SYNC_MODE_TAG,
    bot_id_of,
    bot_partition_key,
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


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Support Ticket", "support-ticket__cm1"),
        ("  Café / Bar №2 ", "cafe-bar-no2__cm1"),
        ("", "cm1"),
        ("???", "cm1"),
        ("x" * 100, "x" * 40 + "__cm1"),
    ],
)
def test_a_bot_key_carries_a_slug_of_its_name_and_its_id(name, key):
    assert bot_partition_key("cm1", name) == key
    assert bot_id_of(key) == "cm1"


def test_the_id_is_everything_after_the_first_separator():
    # No slug holds the separator, so an id that does is still read whole; an older
    # instance's key is the id itself.
    assert bot_id_of(bot_partition_key("odd__id", "Support")) == "odd__id"
    assert bot_id_of("cmmfdtuun0001b0t08o5rcma6") == "cmmfdtuun0001b0t08o5rcma6"
