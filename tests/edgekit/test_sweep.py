"""Sweeps share finished stages, find the Pareto front, and write HTML + JUnit; runs resume."""

import hashlib
import json
import shutil
import xml.etree.ElementTree as ET

import pytest
import yaml

from edgekit.sweep import pareto_front


def _cand(name, acc, lat, size, gz=None):
    return {"name": name, "accuracy": acc, "latency_ms": {"local": lat}, "bytes": size,
            "gzip_bytes": size // 2 if gz is None else gz}


def test_pareto_front_by_hand():
    cands = [_cand("a", 0.99, 1.0, 100), _cand("b", 0.98, 0.5, 100),
             _cand("c", 0.97, 1.1, 120),  # dominated by a and b
             _cand("d", 0.99, 1.0, 100),  # ties with a: neither dominates
             _cand("e", 0.90, 0.4, 50)]
    assert pareto_front(cands, "local") == ["a", "b", "d", "e"]
    # Latency ignored when a candidate lacks it.
    cands[1]["latency_ms"]["local"] = None
    assert pareto_front(cands, "local") == ["a", "d", "e"]


def test_pareto_counts_gzip_size_and_ignores_latency_noise():
    # Same accuracy and raw size, 1 % slower (noise), half the gzip size: the sparse one wins.
    dense, sparse = _cand("dense", 0.99, 1.00, 100, gz=60), _cand("sparse", 0.99, 1.01, 100, gz=30)
    assert pareto_front([dense, sparse], "local") == ["sparse"]
    # 10 % slower is a real difference: both stay.
    sparse["latency_ms"]["local"] = 1.10
    assert pareto_front([dense, sparse], "local") == ["dense", "sparse"]


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory, cli, fast_recipe):
    root = tmp_path_factory.mktemp("sweep")
    recipe = {**fast_recipe,
              "convert": {"mode": "int8", "calibration_samples": 32, "float32_baseline": False},
              "budgets": {"max_accuracy_drop": 50.0},
              "sweep": {"stages.0.config.final_sparsity": [0.5, 0.8],
                        "convert.mode": ["int8", "int16x8"]}}
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = root / "out"
    assert cli(["run", str(path), "--out", str(out), "--junit", str(root / "junit.xml")]) == 0
    return root, out, json.loads((out / "sweep.json").read_text())


def test_every_candidate_runs_with_its_own_report(sweep_run):
    _, out, sweep = sweep_run
    assert sweep["schema"] == "edgekit.sweep/1" and len(sweep["candidates"]) == 4
    params = {(c["params"]["stages.0.config.final_sparsity"], c["params"]["convert.mode"])
              for c in sweep["candidates"]}
    assert params == {(0.5, "int8"), (0.5, "int16x8"), (0.8, "int8"), (0.8, "int16x8")}
    for c in sweep["candidates"]:
        report = json.loads((out / c["run"] / "report.json").read_text())
        assert report["final"]["accuracy"] == c["accuracy"]
        mode = c["params"]["convert.mode"]
        assert report["final"]["artefact"] == f"model_{mode}.tflite"
        # QAT ranges are int8 ranges: int16x8 converts the pruned model instead.
        assert report["stages"][-1]["source"] == ("qat" if mode == "int8" else "prune")


def test_candidates_share_the_float_model_and_compression(sweep_run):
    _, out, sweep = sweep_run
    trained = {"float": 0, "prune": 0, "qat": 0}
    for c in sweep["candidates"]:
        report = json.loads((out / c["run"] / "report.json").read_text())
        for e in report["stages"][:3]:
            trained[e["name"]] += "reused" not in e
    # One float model for all four; one prune + QAT per sparsity.
    assert trained == {"float": 1, "prune": 2, "qat": 2}


def test_pareto_front_is_consistent(sweep_run):
    _, _, sweep = sweep_run
    front = [c for c in sweep["candidates"] if c["pareto"]]
    assert front and [c["name"] for c in front] == sweep["pareto_front"]
    for c in sweep["candidates"]:
        if c["pareto"]:
            continue
        assert any(f["accuracy"] >= c["accuracy"] and f["bytes"] <= c["bytes"]
                   and f["gzip_bytes"] <= c["gzip_bytes"]
                   and f["latency_ms"]["local"] <= 1.03 * c["latency_ms"]["local"]
                   for f in front)


def test_html_has_a_pareto_plot_listing_every_candidate(sweep_run):
    _, out, sweep = sweep_run
    html = (out / "report.html").read_text()
    assert 'id="plot-pareto"' in html
    figure = html[html.index('id="plot-pareto"'):]
    figure = figure[:figure.index("</figure>")]
    assert "<svg" in figure
    for c in sweep["candidates"]:
        assert c["name"] in figure, c["name"]
    md = (out / "report.md").read_text()
    assert all(c["name"] in md for c in sweep["candidates"])


def test_junit_has_one_suite_per_candidate(sweep_run):
    root, _, sweep = sweep_run
    tree = ET.parse(root / "junit.xml").getroot()
    suites = tree.findall("testsuite")
    assert sorted(s.get("name") for s in suites) == sorted(c["name"] for c in sweep["candidates"])
    assert all(s.get("failures") == "0" and s.get("tests") == "1" for s in suites)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_resume_reuses_finished_stages_and_redoes_changed_ones(fast_run, tmp_path, cli,
                                                               fast_recipe, capsys):
    src, _ = fast_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    before = {n: _sha(out / n) for n in ("float.keras", "prune.keras", "qat.h5")}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(fast_recipe))
    assert cli(["run", str(recipe), "--out", str(out), "--resume"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [("reused" in e) for e in report["stages"][:3]] == [True, True, True]
    assert {n: _sha(out / n) for n in before} == before
    assert "reused finished stage" in capsys.readouterr().err
    # Change QAT only: float and prune are reused, QAT trains again.
    changed = json.loads(json.dumps(fast_recipe))
    changed["stages"][1]["config"]["epochs"] = 1
    recipe.write_text(yaml.safe_dump(changed))
    assert cli(["run", str(recipe), "--out", str(out), "--resume"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [("reused" in e) for e in report["stages"][:3]] == [True, True, False]


def test_stage_cache_drops_entries_whose_file_was_overwritten(tmp_path):
    from edgekit.stage_cache import StageCache

    art = tmp_path / "qat.h5"
    art.write_bytes(b"v1")
    cache = StageCache(tmp_path, resume=True)
    cache.record("old", art, {"name": "qat"})
    art.write_bytes(b"v2")
    cache.record("new", art, {"name": "qat"})
    again = StageCache(tmp_path, resume=True)
    assert again.lookup("old") is None and again.lookup("new")["path"] == art
    assert StageCache(tmp_path, resume=False).lookup("new") is None
