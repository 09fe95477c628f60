"""The demo's promises (issue #2), checked on the real run: `edgekit demo`.

Slow (``make test-all``, as pytest.ini says of the full demo acceptance): the demo trains its
CNN on 32x32 digits for its full epochs (about 2 minutes on 2 cores). The default run checks
the same pipeline on a short recipe (``fast_run`` in conftest.py).
"""

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("demo")
    assert cli(["demo", "--out", str(out)]) == 0
    return out, json.loads((out / "report.json").read_text())


def test_float_accuracy_at_least_98_5(demo):
    _, report = demo
    assert report["final"]["float_accuracy"] >= 0.985


def test_int8_tflite_within_one_point_of_float(demo):
    _, report = demo
    assert report["final"]["accuracy_drop_points"] <= 1.0
    assert report["passed"] is True


def test_pruned_layers_at_least_79_percent_zeros_in_the_tflite(demo):
    _, report = demo
    ws = report["stages"][-1]["weight_sparsity"]
    assert len(ws) == 5
    assert all(w["sparsity"] >= 0.79 for w in ws), ws


def test_final_model_passes_require_int8(demo, cli):
    out, report = demo
    assert cli(["inspect", str(out / "model_int8.tflite"), "--require-int8"]) == 0
    stages = [e["name"] for e in report["stages"]]
    assert stages == ["float", "prune", "qat", "float32", "int8_dense", "model_int8"]
    assert report["stages"][2]["details"]["prune_preserving"] is True


def test_report_md_shows_every_stage(demo):
    out, _ = demo
    md = (out / "report.md").read_text()
    for row in ("| float |", "| prune |", "| qat |", "| float32 |", "| model_int8 |"):
        assert row in md
    assert "Overall: **PASS**" in md
