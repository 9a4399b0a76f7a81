"""bench.workspaces in a short form: two small rate-limited workspaces, each synced alone and then
both at once, exact against their sandboxes (the area raises otherwise)."""

from __future__ import annotations

import pytest

from bench.workspaces import Plan, Shape, run

pytestmark = pytest.mark.slow

# Ten requests or fewer each, well inside the budget, so this checks the harness, not the
# budget; a short window keeps the wait for empty windows between measurements short.
SHORT = Plan(
    shapes={
        "acme": Shape(seed=41, bots=2, per_bot=60),
        "globex": Shape(seed=42, bots=3, per_bot=40),
    },
    counts=(2,),
    rate_limit=20,
    window_s=5.0,
)


def test_two_workspaces_alone_then_at_once_make_the_same_requests_without_a_429() -> None:
    figures = run(SHORT)

    alone = figures["alone"]
    both = figures["at_once_2"]
    assert set(alone) == set(both["workspaces"]) == {"acme", "globex"}
    assert {name: alone[name]["workspaces"][name]["submissions"] for name in alone} == {
        "acme": 120,
        "globex": 120,
    }
    for name, at_once in both["workspaces"].items():
        single = alone[name]["workspaces"][name]
        # A new data directory each time: the same first sync, so the same requests.
        assert at_once["requests"] == single["requests"] > 0
        assert at_once["http_429"] == single["http_429"] == 0
        assert at_once["submissions"] == single["submissions"]
    slowest = figures["slowest_alone"]
    assert slowest["wall_s"] == max(alone[name]["wall_s"] for name in alone)
    assert both["ratio_to_slowest_alone"] == round(both["wall_s"] / slowest["wall_s"], 2)
    assert both["wall_s"] >= max(w["wall_s"] for w in both["workspaces"].values())
