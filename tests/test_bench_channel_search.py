"""bench/channel_search.py's goal lines: computed from the rows, and a failed search reported."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from module_by_path import load_module

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench() -> Any:  # the script puts bench/ on sys.path for its neighbours itself
    return load_module("channel_search_bench", BENCH / "channel_search.py")


def _row(ratio: float, accuracy: float, budget: float) -> dict[str, Any]:
    return {"budget": budget, "channels": 24, "figure": ratio, "ratio": ratio,
            "int8_accuracy": accuracy, "macs": 40, "p50_ratio": ratio, "a72_ratio": ratio}


def _results(rows: dict[str, Any], failed: dict[str, str]) -> dict[int, Any]:
    return {0: {"dense": {"int8_accuracy": 0.90, "float_accuracy": 0.91, "macs": 100},
                "targets": {"local": {"dense_figure": 1.0, "rows": rows, "failed": failed}}}}


def _goal_lines(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("- seed 0, local")]


def test_a_searched_model_within_the_band_and_most_accurate_meets_every_goal() -> None:
    bench = _bench()
    rows = {"searched 0.5": _row(0.49, 0.88, 0.5), "uniform 0.5": _row(0.45, 0.87, 0.5),
            "width 0.5": _row(0.45, 0.86, 0.5)}
    md = bench.render(_results(rows, {}), SimpleNamespace(epochs=30, budgets=[0.5]), "cmd")
    assert _goal_lines(md) == [
        "- seed 0, local, budget 0.5: shipped at 0.490 of dense (within: **met**, within 5 % "
        "under: **met**); int8 88.00 % vs uniform 87.00 % and width 86.00 %: **met**"]


def test_a_searched_model_over_the_budget_or_less_accurate_is_missed() -> None:
    bench = _bench()
    rows = {"searched 0.5": _row(0.52, 0.86, 0.5), "uniform 0.5": _row(0.45, 0.87, 0.5)}
    (line,) = _goal_lines(bench.render(_results(rows, {}),
                                       SimpleNamespace(epochs=30, budgets=[0.5]), "cmd"))
    assert "within: **missed**" in line and line.endswith("**missed**")


def test_a_failed_search_is_a_missed_goal_with_its_reason_and_the_baselines_stay() -> None:
    bench = _bench()
    why = "budget 0.0187 ms not met: best 0.0213 ms (missed by 14 %)"
    rows = {"uniform 0.35": _row(0.30, 0.85, 0.35), "width 0.35": _row(0.30, 0.84, 0.35)}
    md = bench.render(_results(rows, {"searched 0.35": why}),
                      SimpleNamespace(epochs=30, budgets=[0.35]), "cmd")
    assert _goal_lines(md) == [f"- seed 0, local, budget 0.35: the search failed (exit 1 from "
                               f"the stage): {why}: **missed**"]
    assert "| uniform 0.35 | 0.35 | 24 |" in md and "| width 0.35 |" in md
    assert "| searched 0.35 |" not in md


def test_spread_searches_get_their_own_section() -> None:
    bench = _bench()
    assert bench.section_name(["qemu-aarch64:cortex-a72"]) == \
        "channel-search-qemu-aarch64-cortex-a72"
    assert bench.section_name(["local"], spread=True) == "channel-search-local-spread"
