"""bench.compare's table and headline: figures in, markdown out (no sandbox, no dlt)."""

from __future__ import annotations

from typing import Any

from bench.compare import format_events_table, format_table, headline

DEEP = "full sync, deep 100,000 (20 bots x 5,000)"
LIMITED = "rate-limited 50,000"
CORRECT = {"missing": 0, "stale": 0, "exact": True}


def row(wall_s: float, peak_rss_mb: float, requests: int, **more: Any) -> dict[str, Any]:
    return {"wall_s": wall_s, "peak_rss_mb": peak_rss_mb, "requests": requests, **more}


FIGURES: dict[str, Any] = {
    "scenarios": [
        {
            "label": DEEP,
            "kind": "full",
            "shape": "deep",
            "submissions": 100_000,
            "tools": {
                "bare loop": row(2.0, 60.4, 1021),
                "dlt best": row(10.0, 300.0, 1001, http_429=0, **CORRECT),
                "iozen-etl": row(20.0, 449.6, 1021, **CORRECT),
            },
        },
        {
            "label": LIMITED,
            "kind": "rate_limited",
            "shape": "rate",
            "submissions": 50_000,
            "tools": {
                "iozen-etl": row(
                    400.0,
                    310.0,
                    700,
                    http_429=0,
                    budget_share=0.912,
                    missing=3,
                    stale=1,
                    exact=False,
                ),
            },
        },
    ]
}


def test_one_row_per_tool_in_tool_order_with_ratios_to_dlt_best_and_the_bare_loop() -> None:
    lines = format_table(FIGURES).splitlines()
    assert lines[0].startswith("| scenario | tool | wall s | peak MB | × dlt best | × bare |")
    assert lines[1] == "|" + "---|" * 12
    assert lines[2:5] == [
        f"| {DEEP} | iozen-etl | 20.00 | 450 | 2.00 | 10.00 | 1,021 | — | — | 0 | 0 | yes |",
        f"| {DEEP} | dlt best | 10.00 | 300 | 1.00 | 5.00 | 1,001 | 0 | — | 0 | 0 | yes |",
        f"| {DEEP} | bare loop | 2.00 | 60 | 0.20 | 1.00 | 1,021 | — | — | — | — | — |",
    ]


def test_a_scenario_without_baselines_has_no_ratios_and_an_inexact_row_stands_out() -> None:
    row = format_table(FIGURES).splitlines()[5]
    assert row == (
        f"| {LIMITED} | iozen-etl | 400.00 | 310 | — | — | 700 | 0 | 91% | 3 | 1 | **no** |"
    )
    assert len(format_table(FIGURES).splitlines()) == 6


def test_headline_is_iozen_over_dlt_best_on_the_deep_full_syncs() -> None:
    assert headline(FIGURES) == {"deep 100,000": 2.0}
    assert headline({"scenarios": []}) == {}


def test_the_events_table_takes_dagsters_per_bot_events_off_iozens_full_syncs() -> None:
    figures = {
        "scenarios": [
            {
                **FIGURES["scenarios"][0],
                "tools": {
                    **FIGURES["scenarios"][0]["tools"],
                    "iozen-etl": row(
                        20.0, 449.6, 1021, partition_events=20, partition_events_s=4.0
                    ),
                },
            },
            FIGURES["scenarios"][1],  # not a full sync: no row
        ]
    }
    lines = format_events_table(figures).splitlines()
    assert lines[2:] == [f"| {DEEP} | 20.00 | 20 | 4.00 | 16.00 | 1.60 |"]
