"""Comparing two runs, on the real demo report and modified copies of it."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from edgekit.comparison import compare_reports, format_comparison, load_run
from edgekit.core.errors import InputError

DEMO = Path(__file__).parent / "data" / "demo_report.json"


@pytest.fixture(scope="module")
def demo() -> dict:
    """The demo report (read-only: tests copy it before changing it)."""
    return json.loads(DEMO.read_text())


def modified(report: dict) -> dict:
    """Run B: accuracy -0.01, size +2048 bytes, p50 x1.5, one op added."""
    b = copy.deepcopy(report)
    b["final"]["accuracy"] -= 0.01
    b["final"]["bytes"] += 2048
    final_stage = b["stages"][-1]
    final_stage["accuracy"] -= 0.01
    final_stage["bench"]["local"]["latency_ms"]["p50"] *= 1.5
    final_stage["inspection"]["ops"].append({"op": "ADD", "count": 1})
    return b


def numbers(diff: dict) -> list[dict]:
    """Every numeric item of a comparison."""
    items = [v for v in diff["final"].values() if "delta" in v]
    items += [v for stats in diff["latency"].values() for v in stats.values()]
    items += [s["accuracy"] for s in diff["stages"].values()]
    return items + diff["ops"]["changed"]


def test_identical_runs_change_nothing(demo):
    diff = compare_reports(demo, copy.deepcopy(demo))
    assert diff["schema"] == "edgekit.compare/1"
    for item in numbers(diff):
        assert item["a"] == item["b"]
        assert item["delta"] in (0, None)
    assert diff["ops"] == {"added": [], "removed": [], "changed": [], "unchanged": 4}
    assert diff["budgets"] == []
    assert not diff["final"]["artefact"]["changed"] and not diff["passed"]["changed"]
    assert set(diff["stages"]) == {e["name"] for e in demo["stages"]}
    assert set(diff["latency"]) == {"local"}
    text = format_comparison(diff, "runs/a", "runs/b")
    assert "Nothing changed." in text and "what changed" not in text
    assert "runs/a" in text and "runs/b" in text


def test_each_change_has_the_right_delta_and_rel(demo):
    diff = compare_reports(demo, modified(demo))
    acc = diff["final"]["accuracy"]
    assert acc["delta"] == pytest.approx(-0.01)
    assert acc["rel"] == pytest.approx(-0.01 / demo["final"]["accuracy"])
    size = diff["final"]["bytes"]
    assert (size["a"], size["b"], size["delta"]) == (97840, 99888, 2048)
    assert size["rel"] == pytest.approx(2048 / 97840)
    p50 = diff["latency"]["local"]["p50"]
    assert p50["delta"] == pytest.approx(0.5 * p50["a"])
    assert p50["rel"] == pytest.approx(0.5)
    assert diff["latency"]["local"]["p90"]["delta"] == 0
    assert diff["ops"]["added"] == [{"op": "ADD", "count": 1}]
    assert diff["ops"]["removed"] == [] and diff["ops"]["changed"] == []
    assert diff["stages"]["model_int8"]["accuracy"]["delta"] == pytest.approx(-0.01)
    assert diff["stages"]["qat"]["accuracy"]["delta"] == 0
    assert diff["final"]["gzip_bytes"]["delta"] == 0


def test_format_lists_changes_first_with_signs_and_units(demo):
    text = format_comparison(compare_reports(demo, modified(demo)), "before", "after")
    changed, _, rest = text.partition("Unchanged:")
    lines = {line.split("  ")[0].strip(): line for line in changed.splitlines()}
    assert "-1.00 points (-1.0 %)" in lines["final accuracy"]
    assert "+2.00 KiB (+2.1 %)" in lines["size"]
    assert "95.55 KiB" in lines["size"] and "97.55 KiB" in lines["size"]
    assert "ms (+50.0 %)" in lines["p50 latency [local]"]
    assert lines["op ADD"].endswith("added")
    assert "-1.00 points" in lines["stage model_int8 accuracy"]
    for unchanged in ("gzip size", "p90 latency [local]", "stage qat accuracy", "op CONV_2D"):
        assert unchanged not in lines
    assert len([v for v in lines.values() if v and not v.startswith(("what", "-", "Comp"))]) == 5
    assert rest.strip() == "18 of 23 items."


def test_budget_flips_and_removed_ops(demo):
    b = copy.deepcopy(demo)
    b["budgets"][0]["passed"] = False
    b["budgets"].append({"name": "max_size_kb", "limit": 64, "value": 95.5, "unit": "KiB",
                         "passed": False})
    b["passed"] = False
    ops = b["stages"][-1]["inspection"]["ops"]
    ops[:] = [o for o in ops if o["op"] != "RESHAPE"]
    ops[0]["count"] = 4
    diff = compare_reports(demo, b)
    assert diff["budgets"] == [{"name": "max_accuracy_drop", "a": True, "b": False},
                               {"name": "max_size_kb", "a": None, "b": False}]
    assert diff["ops"]["removed"] == [{"op": "RESHAPE", "count": 1}]
    assert diff["ops"]["changed"] == [{"op": "CONV_2D", "a": 3, "b": 4, "delta": 1,
                                       "rel": pytest.approx(1 / 3)}]
    assert diff["passed"] == {"a": True, "b": False, "changed": True}
    text = format_comparison(diff, "a", "b")
    assert "now fails" in text and "added" in text and "removed" in text
    assert "+1 (+33.3 %)" in text


def test_missing_figures_and_zero_baselines(demo):
    a, b = copy.deepcopy(demo), copy.deepcopy(demo)
    b["stages"][-1]["bench"]["local"]["latency_ms"]["p99"] = None
    a["final"]["accuracy_drop_points"] = 0.0
    b["stages"].insert(1, dict(b["stages"][1], name="distill"))  # only in B: not compared
    diff = compare_reports(a, b)
    p99 = diff["latency"]["local"]["p99"]
    assert p99["b"] is None and p99["delta"] is None and p99["rel"] is None
    drop = diff["final"]["accuracy_drop_points"]
    assert drop["delta"] == pytest.approx(0.2778) and drop["rel"] is None
    assert "distill" not in diff["stages"]
    text = format_comparison(diff, "a", "b")
    assert "not comparable" in text and "+0.28 points" in text


def test_target_only_in_one_run(demo):
    b = copy.deepcopy(demo)
    b["stages"][-1]["bench"]["qemu-aarch64"] = copy.deepcopy(b["stages"][-1]["bench"]["local"])
    diff = compare_reports(demo, b)
    assert diff["latency"]["qemu-aarch64"]["p50"]["a"] is None
    assert diff["latency"]["qemu-aarch64"]["p50"]["b"] is not None


def test_inputs_are_not_changed(demo):
    a, b = copy.deepcopy(demo), modified(demo)
    a_before, b_before = copy.deepcopy(a), copy.deepcopy(b)
    format_comparison(compare_reports(a, b), "a", "b")
    assert a == a_before and b == b_before


def test_load_run_accepts_folder_and_file(tmp_path, demo):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.json").write_text(DEMO.read_text())
    assert load_run(tmp_path / "run") == demo
    assert load_run(str(tmp_path / "run" / "report.json")) == demo


def test_load_run_errors_are_one_clear_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as e:
        load_run(tmp_path / "empty")
    assert str(e.value) == (f"run {str(tmp_path / 'empty')!r} has no report.json; "
                            "expected an edgekit run folder")
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="does not exist"):
        load_run(tmp_path / "nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"is not JSON \(line 1"):
        load_run(bad)
    wrong = tmp_path / "bench.json"
    wrong.write_text(json.dumps({"schema": "edgekit.bench/1"}))
    expected = re.escape("schema 'edgekit.bench/1', expected 'edgekit.report/1'")
    with pytest.raises(InputError, match=expected):
        load_run(wrong)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(InputError, match="not an edgekit report"):
        load_run(listing)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="cannot read"):
        load_run(binary)


def test_bad_inputs_are_input_errors(demo):
    with pytest.raises(InputError, match="run A"):
        compare_reports({"schema": "nope"}, demo)
    with pytest.raises(InputError, match="run B"):
        compare_reports(demo, None)
    with pytest.raises(InputError, match="compare_reports"):
        format_comparison(demo, "a", "b")


def test_macs_and_params_of_the_final_model(demo):
    a, b = copy.deepcopy(demo), copy.deepcopy(demo)
    a["final"].update(macs=6144, params=1619)
    b["final"].update(macs=3072, params=900)
    diff = compare_reports(a, b)
    assert diff["final"]["macs"] == {"a": 6144, "b": 3072, "delta": -3072, "rel": -0.5}
    assert diff["final"]["params"] == {"a": 1619, "b": 900, "delta": -719,
                                       "rel": pytest.approx(-719 / 1619)}
    text = format_comparison(diff, "a", "b")
    lines = {line.split("  ")[0].strip(): line for line in text.splitlines()}
    assert re.search(r"6,144\s+3,072\s+-3,072 \(-50\.0 %\)$", lines["MACs"])
    assert re.search(r"1,619\s+900\s+-719 \(-44\.4 %\)$", lines["params"])
    # A report written before the work was counted has none: not comparable, not zero.
    old = compare_reports(demo, b)
    assert old["final"]["macs"] == {"a": None, "b": 3072, "delta": None, "rel": None}
    assert "not comparable" in format_comparison(old, "old", "new").split("MACs")[1]
    same = compare_reports(a, copy.deepcopy(a))
    assert same["final"]["macs"]["delta"] == 0 and "Nothing changed." in format_comparison(
        same, "a", "a")
