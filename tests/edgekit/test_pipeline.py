import json

import numpy as np
import pytest

from device_bench.interpreter import load_interpreter, run_batch
from edgekit.recipe import Budgets, Recipe
from edgekit.report import evaluate_budgets

BENCH_KEYS = {"schema", "model", "target", "runtime", "runs", "warmup", "emulated",
              "latency_ms", "memory", "energy"}


def test_run_folder_holds_every_artefact_and_no_temp_files(fast_run):
    out, _ = fast_run
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {"recipe.yaml", "float.keras", "prune.keras", "qat.h5", "float32.tflite",
                "model_int8.tflite", "model_int8.calibration.json", "report.json", "report.md",
                "bench/float32.local.json", "bench/model_int8.local.json",
                "int8_dense.tflite", "bench/int8_dense.local.json"}
    assert expected <= names
    assert not [n for n in names if ".tmp" in n]


def test_report_has_every_stage_with_measured_figures(fast_run):
    _, report = fast_run
    assert report["schema"] == "edgekit.report/1"
    assert [e["name"] for e in report["stages"]] == ["float", "prune", "qat", "float32",
                                                     "int8_dense", "model_int8"]
    # The dense int8 baseline is the float model in int8, beside the deliverable.
    dense = report["stages"][4]
    assert (dense["source"], dense["conversion"]["mode"], dense.get("final")) == (
        "float", "int8", None)
    for e in report["stages"]:
        assert 0.0 < e["accuracy"] <= 1.0, e["name"]
        assert e["bytes"] > e["gzip_bytes"] > 0, e["name"]
    prune = report["stages"][1]
    assert prune["sparsity"] == pytest.approx(0.8, abs=0.01)
    # Each .tflite names the Keras stage it was converted from.
    assert report["stages"][3]["source"] == "float"
    assert report["stages"][5]["source"] == "qat"
    final = report["final"]
    assert final["artefact"] == "model_int8.tflite" and final["full_integer"] is True
    assert final["accuracy_drop_points"] == pytest.approx(
        100 * (final["float_accuracy"] - final["accuracy"]), abs=1e-3)
    assert report["passed"] is True
    assert {b["name"] for b in report["budgets"]} == {
        "max_accuracy_drop", "require_int8", "max_latency_ms[local]"}


def test_heldout_indices_let_anyone_recheck_the_tflite_accuracy(fast_run):
    """Rebuild the held-out set from scikit-learn itself and re-run the .tflite."""
    from sklearn.datasets import load_digits

    from edgekit.core._keras import tf

    out, report = fast_run
    idx = np.asarray(report["data"]["heldout_indices"])
    assert len(idx) == 360 and len(set(idx.tolist())) == 360
    bunch = load_digits()
    x = tf.image.resize((bunch.images[idx] / 16.0)[..., None].astype("float32"), (32, 32)).numpy()
    loaded = load_interpreter(out / "model_int8.tflite")
    pred = np.argmax(run_batch(loaded, x), axis=-1)
    assert float(np.mean(pred == bunch.target[idx])) == pytest.approx(report["final"]["accuracy"])


def test_pruned_weights_stay_zero_in_the_tflite(fast_run):
    _, report = fast_run
    final = report["stages"][-1]
    ws = {w["tensor"]: w["sparsity"] for w in final["weight_sparsity"]}
    assert len(ws) == 5  # three convs, two dense layers
    assert min(ws.values()) >= 0.79


def test_calibration_indices_come_from_the_training_split(fast_run):
    out, report = fast_run
    record = json.loads((out / "model_int8.calibration.json").read_text())
    assert record["seed"] == 0 and len(record["indices"]) == 64
    assert not set(record["indices"]) & set(report["data"]["heldout_indices"])


def test_bench_results_follow_the_schema(fast_run):
    out, report = fast_run
    for name in ("float32", "model_int8"):
        result = json.loads((out / "bench" / f"{name}.local.json").read_text())
        assert BENCH_KEYS <= set(result)
        assert result["schema"] == "edgekit.bench/1" and result["target"]["kind"] == "local"
        lat = result["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert result["runs"] >= 20
    int8 = report["stages"][-1]["bench"]["local"]
    assert int8["model"]["bytes"] == report["final"]["bytes"]


def test_saved_recipe_is_the_resolved_recipe(fast_run):
    out, report = fast_run
    saved = Recipe.load(out / "recipe.yaml")
    assert saved.to_dict() == report["recipe"]
    assert saved.stages[0].final_sparsity == 0.8 and saved.bench.runs == 20


def test_budgets_fail_with_the_failing_figure(fast_run):
    _, report = fast_run
    float_entry, final = report["stages"][0], report["stages"][-1]
    tight = Budgets(max_accuracy_drop=-0.0, max_size_kb=1.0,
                    max_latency_ms={"local": 1e-6, "ssh://pi@board": 5.0}, require_int8=True)
    results = {b["name"]: b for b in evaluate_budgets(tight, float_entry, final)}
    assert results["max_size_kb"]["passed"] is False
    assert results["max_size_kb"]["value"] == pytest.approx(final["bytes"] / 1024, abs=1e-3)
    assert results["max_latency_ms[local]"]["passed"] is False
    # A target that was not measured fails with value None, never a guess.
    assert results["max_latency_ms[ssh://pi@board]"]["value"] is None
    assert results["max_latency_ms[ssh://pi@board]"]["passed"] is False
    assert results["require_int8"]["passed"] is True


def test_a_loaded_model_without_class_scores_is_refused(tmp_path):
    from edgekit.core._keras import keras
    from edgekit.core.errors import InputError
    from edgekit.core.model_io import save_model
    from edgekit.pipeline import Pipeline

    inputs = keras.Input((32, 32, 1))
    outputs = keras.layers.Conv2D(10, 3, padding="same")(inputs)  # (batch, 32, 32, 10)
    path = save_model(keras.Model(inputs, outputs, name="segmenter"), tmp_path / "seg.keras")
    pipe = Pipeline(Recipe.from_dict({"model": str(path), "data": "digits"}), tmp_path / "run")
    with pytest.raises(InputError) as err:
        pipe.resolve_inputs()
    assert str(err.value) == ("model 'segmenter' outputs shape [None, 32, 32, 10]; the pipeline "
                              "scores classifiers whose output is (batch, classes)")


def test_a_misshapen_calibration_file_fails_before_training(tmp_path):
    from edgekit.core.errors import InputError
    from edgekit.pipeline import Pipeline

    bad = tmp_path / "cal.npz"
    np.savez(bad, x=np.zeros((4, 28, 28), np.float32))
    recipe = Recipe.from_dict({"model": "demo_cnn", "data": "digits",
                               "convert": {"calibration": str(bad)}})
    with pytest.raises(InputError, match=r"\(28, 28\) but the model input .* \(32, 32, 1\)"):
        Pipeline(recipe, tmp_path / "run").resolve_inputs()
    missing = Recipe.from_dict({"model": "demo_cnn", "data": "digits",
                                "convert": {"calibration": str(tmp_path / "none.npz")}})
    with pytest.raises(InputError, match=r"none\.npz"):
        Pipeline(missing, tmp_path / "run").resolve_inputs()


def test_reports_say_what_prune_and_qat_did_with_each_layer(fast_run):
    """report.md and report.html list the layers each stage left, with the reason from details."""
    import html

    out, report = fast_run
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    entries = {e["kind"]: e.get("details") for e in report["stages"]}
    prune, qat = entries["Prune"], entries["QAT"]
    assert "## Compression stages" in md and "<h2>Compression stages</h2>" in page
    assert f"{prune['counts']['pruned']} layers pruned, {prune['counts']['left']} left" in md
    assert f"{qat['counts']['quantized']} layers quantized, {qat['counts']['left']} left" in md
    assert prune["skipped_layers"], "the demo CNN's BatchNormalization layers are never pruned"
    for name, reason in prune["skipped_layers"].items():
        assert f"| {name} | BatchNormalization |" in md
        assert reason in md and html.escape(reason) in page
    assert ("Sparsity target reached." in md) is prune["target_reached"]
